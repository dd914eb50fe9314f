#!/usr/bin/env python3
"""sherpa-onnx against speechmoe-transcribe on the embedded recipe's dev set (issue 23).

    cd egs/synth_mandarin
    ../../.venv/bin/python results/sherpa_onnx/measure.py EXPORT_DIR OUT_DIR [LANG_DIR]

EXPORT_DIR is stage 7's export (with sherpa-onnx/ in it). Writes, for every runtime, the
hypotheses (name<TAB>text) and OUT_DIR/summary.json: CER over dev (python -m
speechmoe.scoring), RTF of the whole decode (audio read, fbank, network, search; one
thread), for
  toolkit-onnx          speechmoe-transcribe --onnx (real pitch, the toolkit's fbank)
  sherpa-onnx           sherpa-onnx's OfflineRecognizer with the TLG, fbank options set
                        as the export says (pitch held constant: sherpa-onnx has none)
  sherpa-onnx-c-api     the same with only sample rate and feature dim set, as the C / C++
                        API's config does (high_freq left at its -400)
  sherpa-onnx-lang-tlg  (with LANG_DIR) sherpa-onnx as above with LANG_DIR/TLG.fst instead of
                        the export's token-start graph: what the export did before the
                        homophone fix (speechmoe/lang/token_start.py)
"""
import json
import subprocess
import sys
import time
from pathlib import Path

from dev_decode import dev_rows, sherpa_decode, total_audio_seconds, wav
from dev_decode import score as score_against

from speechmoe.sherpa import with_graph

export, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
py = sys.executable
rows = dev_rows()
(out / "ref.tsv").write_text("".join(f"{u}\t{w}\n" for u, w in rows))
(out / "wav.scp").write_text("".join(f"{u} {wav(u)}\n" for u, _ in rows))
audio_seconds = total_audio_seconds(rows)


def score(hyp: Path) -> str:
    return score_against(out / "ref.tsv", hyp)


summary = {"dev_utterances": len(rows), "audio_seconds": round(audio_seconds, 1)}
t0 = time.perf_counter()
exe = Path(py).parent / "speechmoe-transcribe"
r = subprocess.run([str(exe), str(export), str(out / "wav.scp"), "--onnx", "--threads", "1"],
                   capture_output=True, text=True, check=True)
wall = time.perf_counter() - t0
(out / "hyp_toolkit_onnx.tsv").write_text(r.stdout)
summary["toolkit-onnx"] = {"score": score(out / "hyp_toolkit_onnx.tsv"),
                           "rtf": round(wall / audio_seconds, 4),
                           "stderr": r.stderr.strip().splitlines()[-1]}  # its summary line
runs = [("sherpa-onnx", export / "sherpa-onnx", False),
        ("sherpa-onnx-c-api", export / "sherpa-onnx", True)]
if len(sys.argv) > 3:  # the same directory with the lang dir's TLG.fst in place of the export's
    lang_tlg = Path(sys.argv[3]).resolve() / "TLG.fst"
    if not lang_tlg.is_file():
        sys.exit(f"measure.py: {lang_tlg} does not exist")
    runs.append(("sherpa-onnx-lang-tlg", with_graph(export / "sherpa-onnx", lang_tlg), False))
for name, model_dir, c_api in runs:
    hyps, wall = sherpa_decode(model_dir, rows, c_api_fbank=c_api)
    (out / f"hyp_{name}.tsv").write_text(hyps)
    summary[name] = {"score": score(out / f"hyp_{name}.tsv"),
                     "rtf": round(wall / audio_seconds, 4)}
(out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
print(json.dumps(summary, indent=1, ensure_ascii=False))
