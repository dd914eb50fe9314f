"""speechmoe-transcribe: recognise recordings with an exported model directory.

    speechmoe-transcribe MODEL_DIR a.wav b.flac             # files
    speechmoe-transcribe MODEL_DIR data/wav.scp             # Kaldi wav.scp: "<name> <path>"
    speechmoe-transcribe MODEL_DIR recordings/              # every audio file below a dir
    find . -name '*.wav' | speechmoe-transcribe MODEL_DIR -  # a list on stdin

Prints "<name>\\t<text>" per recording on stdout, in the order given (the name is the
path, or the wav.scp key). Progress (for more than 10 files) and a summary with the
real-time factor go to stderr. A file that cannot be read, is empty or is too short gets
one line on stderr naming it; the others are still transcribed, and the exit status is 1
when any failed (2 for a bad model directory or usage).

MODEL_DIR is written by `local/export.py` (recipe stage 7). Options: --method
wfst|greedy (default: wfst when the directory has a graph), --onnx (the network in
onnxruntime), --int8 (in onnxruntime with int8 weights), --device, --threads,
--batch-seconds, --beam.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from speechmoe.recognizer import AudioError, ModelDirError, Recognizer, read_audio

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph"}


def expand_inputs(args: list[str], stdin=None) -> list[tuple[str, Path]]:
    """(name, path) of every recording the arguments name."""
    out = []
    for a in args:
        if a == "-":
            stdin = stdin or sys.stdin
            out += [(line.strip(), Path(line.strip())) for line in stdin if line.strip()]
            continue
        p = Path(a)
        if p.is_dir():
            out += [(str(f), f) for f in sorted(p.rglob("*"))
                    if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES]
        elif p.name == "wav.scp" or p.suffix == ".scp":
            with p.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    fields = line.split(maxsplit=1)
                    if not fields:
                        continue
                    if len(fields) != 2 or fields[1].rstrip().endswith("|"):
                        raise ValueError(f"{p}:{n}: expected '<name> <path>' (piped commands "
                                         "are not supported)")
                    out.append((fields[0], Path(fields[1].strip())))
        else:
            out.append((a, p))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="speechmoe-transcribe", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model_dir", type=Path)
    p.add_argument("inputs", nargs="*", default=["-"],
                   help="audio files, wav.scp files, directories, or - (a list on stdin)")
    p.add_argument("--method", choices=["auto", "wfst", "greedy"], default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-seconds", type=float, default=60.0)
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--onnx", action="store_true",
                   help="run the network in onnxruntime (MODEL_DIR/model.onnx)")
    p.add_argument("--int8", action="store_true",
                   help="run the network in onnxruntime with int8 weights "
                        "(MODEL_DIR/model.int8.onnx)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: default)")
    args = p.parse_args(argv)

    from tqdm import tqdm

    try:
        items = expand_inputs(args.inputs)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        rec = Recognizer.from_dir(args.model_dir, method=args.method, device=args.device,
                                  beam=args.beam, onnx=args.onnx, threads=args.threads,
                                  int8=args.int8)
    except (ModelDirError, ValueError, FileNotFoundError) as exc:
        print(f"speechmoe-transcribe: error: {exc}", file=sys.stderr)
        return 2
    if not items:
        print("speechmoe-transcribe: error: no recordings given", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    failed = done = 0
    audio = 0.0
    pending: list[tuple[str, object, int]] = []
    pending_seconds = 0.0
    bar = tqdm(total=len(items), unit="file", disable=len(items) <= 10, file=sys.stderr)

    def flush():
        nonlocal done, pending, pending_seconds
        if pending:
            for r in rec.transcribe(pending, batch_seconds=args.batch_seconds):
                print(f"{r.name}\t{r.text}", flush=True)
                done += 1
            bar.update(len(pending))
        pending, pending_seconds = [], 0.0

    for name, path in items:
        try:
            samples, seconds = read_audio(path, rec.features.sample_rate)
        except AudioError as exc:
            failed += 1
            bar.update(1)
            where = "" if name == str(path) else f"{name}: "  # a wav.scp key, then the path
            tqdm.write(f"speechmoe-transcribe: {where}{exc}", file=sys.stderr)
            continue
        pending.append((name, samples, rec.features.sample_rate))
        pending_seconds += seconds
        audio += seconds
        if pending_seconds >= args.batch_seconds:
            flush()
    flush()
    bar.close()
    wall = time.perf_counter() - t0
    runtime = "onnxruntime, int8" if args.int8 else "onnxruntime" if args.onnx else rec.device
    summary = (f"speechmoe-transcribe: {done} of {len(items)} recordings transcribed "
               f"({rec.method}, {runtime})")
    if done:
        summary += f", {audio:.1f} s of audio in {wall:.1f} s: RTF {wall / audio:.3f}"
    if failed:
        summary += f"; {failed} failed (listed above)"
    print(summary, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
