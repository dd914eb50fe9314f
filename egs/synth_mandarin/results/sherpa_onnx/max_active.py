#!/usr/bin/env python3
"""sherpa-onnx's WFST search at several max_active values on dev (one thread): CER and RTF.

    cd egs/synth_mandarin
    ../../.venv/bin/python results/sherpa_onnx/max_active.py EXPORT_DIR OUT.json 3000 1000 300

EXPORT_DIR is stage 7's export (with sherpa-onnx/ in it). RTF is the whole decode over
dev's audio: recognizer construction (graph loading), audio reading, fbank, network, search.
"""
import json
import sys
import tempfile
from pathlib import Path

from dev_decode import dev_rows, score, sherpa_decode, total_audio_seconds

export, out = Path(sys.argv[1]), Path(sys.argv[2])
values = [int(v) for v in sys.argv[3:]] or [3000, 1000, 300]
rows = dev_rows()
seconds = total_audio_seconds(rows)
tmp = Path(tempfile.mkdtemp(prefix="max-active-"))
(tmp / "ref.tsv").write_text("".join(f"{u}\t{w}\n" for u, w in rows))
result = {"dev_utterances": len(rows), "audio_seconds": round(seconds, 1), "runs": []}
for active in values:
    hyps, wall = sherpa_decode(export / "sherpa-onnx", rows, max_active=active)
    (tmp / "hyp.tsv").write_text(hyps)
    result["runs"].append({"max_active": active, "score": score(tmp / "ref.tsv", tmp / "hyp.tsv"),
                           "rtf": round(wall / seconds, 4)})
    print(result["runs"][-1], flush=True)
out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
