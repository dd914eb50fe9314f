#!/usr/bin/env python3
"""sherpa-onnx's WFST search at several max_active values on dev (one thread): CER and RTF.

    cd egs/synth_mandarin
    ../../.venv/bin/python results/sherpa_onnx/max_active.py EXPORT_DIR OUT.json 3000 1000 300

EXPORT_DIR is stage 7's export (with sherpa-onnx/ in it). RTF is the whole decode over
dev's audio: recognizer construction (graph loading), audio reading, fbank, network, search.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from speechmoe.lang.tokenizer import words_to_text
from speechmoe.sherpa import sherpa_recognizer

export, out = Path(sys.argv[1]), Path(sys.argv[2])
values = [int(v) for v in sys.argv[3:]] or [3000, 1000, 300]
rows = [line.split("\t")[:2] for line in Path("data/text/dev.tsv").read_text().splitlines()]
audio_seconds = sum(sf.info(f"data/wav/dev/{u}.wav").duration for u, _ in rows)
words = {int(i): w for w, i in (line.split() for line in
                                 (export / "sherpa-onnx" / "words.txt").read_text().splitlines())}
tmp = Path(tempfile.mkdtemp(prefix="max-active-"))
(tmp / "ref.tsv").write_text("".join(f"{u}\t{w}\n" for u, w in rows))
result = {"dev_utterances": len(rows), "audio_seconds": round(audio_seconds, 1), "runs": []}
for active in values:
    t0 = time.perf_counter()
    rec = sherpa_recognizer(export / "sherpa-onnx", method="wfst", num_threads=1,
                            max_active=active)
    hyps = []
    for u, _ in rows:
        x, sr = sf.read(f"data/wav/dev/{u}.wav", dtype="float32")
        s = rec.create_stream()
        s.accept_waveform(sr, x)
        rec.decode_stream(s)
        hyps.append(f"{u}\t{words_to_text([words[w] for w in s.result.words], 'CER')}\n")
    wall = time.perf_counter() - t0
    (tmp / "hyp.tsv").write_text("".join(hyps))
    score = subprocess.run([sys.executable, "-m", "speechmoe.scoring", str(tmp / "ref.tsv"),
                            str(tmp / "hyp.tsv")], capture_output=True, text=True,
                           check=True).stdout.strip()
    result["runs"].append({"max_active": active, "score": score,
                           "rtf": round(wall / audio_seconds, 4)})
    print(result["runs"][-1], flush=True)
out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
