#!/usr/bin/env python3
"""sherpa-onnx against speechmoe-transcribe on the embedded recipe's sets (issues 23 and 37).

    cd egs/synth_mandarin
    ../../.venv/bin/python results/sherpa_onnx/measure.py EXPORT_DIR OUT_DIR \
        [--lang-dir data/lang] [--sets dev dev_unseen test_read test_chat test_spon] \
        [--c-api-sets dev]

EXPORT_DIR is stage 7's export (with sherpa-onnx/ in it). Each set's audio is what its cuts
(data/manifests/cuts_<set>.jsonl.gz) give, test_spon's room and noise included, written to
OUT_DIR/wav/<set>/ (or --wav-dir) so that every runtime reads the same samples. For each
set and runtime: the hypotheses (OUT_DIR/<set>/hyp_<runtime>.tsv, name<TAB>text), the CER
(python -m speechmoe.scoring) and the RTF of the whole decode (audio read, fbank, network,
search; one thread), in OUT_DIR/summary.json. The runtimes:
  toolkit-onnx          speechmoe-transcribe --onnx (the toolkit's fbank, real pitch)
  sherpa-onnx           sherpa-onnx's OfflineRecognizer with the export's graph, its fbank
                        options set as sherpa-onnx.json says (a pitch model's pitch held
                        constant: sherpa-onnx computes none)
  sherpa-onnx-c-api     (--c-api-sets) the same with only sample rate and feature dim set,
                        as the C / C++ API's config does (high_freq left at its -400)
  sherpa-onnx-lang-tlg  (--lang-dir, dev only) sherpa-onnx with the lang dir's TLG.fst
                        instead of the export's token-start graph: what the export did
                        before the homophone fix (speechmoe/lang/token_start.py)
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf
from lhotse import CutSet

from dev_decode import score, sherpa_decode
from speechmoe.data.dataset import cut_words
from speechmoe.sherpa import with_graph

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
p.add_argument("export", type=Path)
p.add_argument("out", type=Path)
p.add_argument("--lang-dir", type=Path, default=None)
p.add_argument("--sets", nargs="+", default=["dev"])
p.add_argument("--c-api-sets", nargs="*", default=["dev"])
p.add_argument("--wav-dir", type=Path, default=None, help="where the audio goes [OUT_DIR/wav]")
args = p.parse_args()
export, out = args.export, args.out
out.mkdir(parents=True, exist_ok=True)


def render(name: str) -> tuple[list[tuple[str, str]], float]:
    """[(utterance id, wav path)] of a set, written once, and its seconds of audio."""
    path = Path(f"data/manifests/cuts_{name}.jsonl.gz")
    if not path.is_file():
        sys.exit(f"measure.py: {path} does not exist (run stages 0-1)")
    cuts = CutSet.from_file(path).to_eager()
    if len(cuts) == 0:
        sys.exit(f"measure.py: {path} has no cuts")
    wav_dir = (args.wav_dir or out / "wav") / name
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows, refs, seconds = [], [], 0.0
    for c in sorted(cuts, key=lambda c: c.id):
        w = wav_dir / f"{c.id}.wav"
        if not w.is_file():
            sf.write(w, c.load_audio()[0], c.sampling_rate, subtype="FLOAT")
        rows.append((c.id, str(w)))
        refs.append(f"{c.id}\t{' '.join(cut_words(c))}\n")
        seconds += c.duration
    (out / name).mkdir(exist_ok=True)
    (out / name / "ref.tsv").write_text("".join(refs))
    (out / name / "wav.scp").write_text("".join(f"{u} {w}\n" for u, w in rows))
    return rows, seconds


exe = Path(sys.executable).parent / "speechmoe-transcribe"
summary = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "sets": {}}
for name in args.sets:
    rows, seconds = render(name)
    d = out / name
    result = {"utterances": len(rows), "audio_seconds": round(seconds, 1)}
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), str(export), str(d / "wav.scp"), "--onnx", "--threads", "1"],
                       capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    (d / "hyp_toolkit-onnx.tsv").write_text(r.stdout)
    result["toolkit-onnx"] = {"score": score(d / "ref.tsv", d / "hyp_toolkit-onnx.tsv"),
                              "rtf": round(wall / seconds, 4),
                              "stderr": r.stderr.strip().splitlines()[-1]}
    runs = [("sherpa-onnx", export / "sherpa-onnx", False)]
    if name in args.c_api_sets:
        runs.append(("sherpa-onnx-c-api", export / "sherpa-onnx", True))
    if args.lang_dir is not None and name == "dev":
        lang_tlg = args.lang_dir.resolve() / "TLG.fst"
        if not lang_tlg.is_file():
            sys.exit(f"measure.py: {lang_tlg} does not exist")
        runs.append(("sherpa-onnx-lang-tlg", with_graph(export / "sherpa-onnx", lang_tlg),
                     False))
    for runtime, model_dir, c_api in runs:
        hyps, wall = sherpa_decode(model_dir, rows, [w for _, w in rows], c_api_fbank=c_api)
        (d / f"hyp_{runtime}.tsv").write_text(hyps)
        result[runtime] = {"score": score(d / "ref.tsv", d / f"hyp_{runtime}.tsv"),
                           "rtf": round(wall / seconds, 4)}
    summary["sets"][name] = result
    print(name, json.dumps(result, ensure_ascii=False), flush=True)
(out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
