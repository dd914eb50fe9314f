#!/usr/bin/env python3
"""sherpa-onnx's WFST decode of dev with one exported model and several graphs.

    cd egs/synth_mandarin
    ../../.venv/bin/python results/sherpa_onnx/graphs.py EXPORT_DIR OUT_DIR NAME=GRAPH [NAME=GRAPH ...]

EXPORT_DIR is stage 7's export (with sherpa-onnx/ in it); each GRAPH replaces its TLG.fst
in turn (the other files linked). Prints and writes to OUT_DIR/summary.json, per graph,
the dev CER (python -m speechmoe.scoring) and the RTF of the whole decode on one thread.
"""
import json
import sys
from pathlib import Path

from dev_decode import dev_rows, sherpa_decode, total_audio_seconds
from dev_decode import score as score_against

from speechmoe.sherpa import with_graph

export, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rows = dev_rows()
(out / "ref.tsv").write_text("".join(f"{u}\t{w}\n" for u, w in rows))
audio_seconds = total_audio_seconds(rows)
summary = {"dev_utterances": len(rows), "audio_seconds": round(audio_seconds, 1)}
for spec in sys.argv[3:]:
    name, graph = spec.split("=", 1)
    hyps, wall = sherpa_decode(with_graph(export / "sherpa-onnx", Path(graph)), rows)
    (out / f"hyp_{name}.tsv").write_text(hyps)
    summary[name] = {"graph": graph,
                     "score": score_against(out / "ref.tsv", out / f"hyp_{name}.tsv"),
                     "rtf": round(wall / audio_seconds, 4)}
    print(name, summary[name], flush=True)
(out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
