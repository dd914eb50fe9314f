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

Recordings of any length: one longer than a network window (--window-seconds, 20) is read
window by window and cut into segments at its pauses (speechmoe.longform), each decoded
as soon as it is cut, in memory that does not grow with its length. Output formats
(--format): text (the default, above); segments ("<name>\\t<start>\\t<end>\\t<text>" per
segment, seconds, printed as each finishes); json (one object per recording per line:
text, duration and segments with their tokens and times); srt (subtitles). With
--output-dir DIR each recording's result goes to DIR/<name>.txt|.tsv|.json|.srt instead.

MODEL_DIR is written by `local/export.py` (recipe stage 7). Options: --method
wfst|greedy (default: wfst when the directory has a graph), --onnx (the network in
onnxruntime), --int8 (in onnxruntime with int8 weights), --device, --threads,
--batch-seconds, --beam.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from pathlib import Path

from speechmoe.data.audio import AudioError
from speechmoe.logs import script_parser
from speechmoe.longform import LongFormConfig
from speechmoe.model_dir import ModelDirError
from speechmoe.recognizer import AudioInput, Recognizer, Segment, Transcript
from speechmoe.utils import atomic_write_text

SUFFIX = {"text": ".txt", "segments": ".tsv", "json": ".json", "srt": ".srt"}

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


def srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def segment_line(seg: Segment) -> str:
    return f"{seg.name}\t{seg.start:.2f}\t{seg.end:.2f}\t{seg.text}"


def render(t: Transcript, fmt: str) -> str:
    """One recording's result in a format (each ending with a newline)."""
    if fmt == "text":
        return f"{t.name}\t{t.text}\n"
    if fmt == "segments":
        return "".join(segment_line(s) + "\n" for s in t.segments)
    if fmt == "json":
        return json.dumps({"name": t.name, "text": t.text, "duration": round(t.duration, 3),
                           "method": t.method, "segments": [
                               {k: v for k, v in dataclasses.asdict(s).items() if k != "name"}
                               for s in t.segments]}, ensure_ascii=False) + "\n"
    return "".join(f"{i}\n{srt_time(s.start)} --> {srt_time(s.end)}\n{s.text}\n\n"
                   for i, s in enumerate(t.segments, 1))


def output_name(name: str, taken: set) -> str:
    """A file name for a recording (a path: its stem; a wav.scp key: the key), made unique
    among those already taken."""
    base = Path(name).stem if ("/" in name or Path(name).suffix.lower() in AUDIO_SUFFIXES) \
        else name
    base = re.sub(r"[^\w.-]+", "_", base).strip("._") or "recording"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}-{k}"
    taken.add(out)
    return out


def main(argv=None) -> int:
    p = script_parser(__doc__, prog="speechmoe-transcribe")
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
    p.add_argument("--format", choices=list(SUFFIX), default="text",
                   help="text, segments (with times, as they finish), json or srt")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="write DIR/<name>.txt|.tsv|.json|.srt per recording, not stdout")
    p.add_argument("--window-seconds", type=float, default=LongFormConfig.window_seconds,
                   help="longer recordings go window by window, cut into segments")
    p.add_argument("--max-segment-seconds", type=float,
                   default=LongFormConfig.max_segment_seconds,
                   help="a segment without a pause is cut at its longest blank run by then")
    p.add_argument("--pause-seconds", type=float, default=LongFormConfig.pause_seconds,
                   help="a blank run this long ends a segment at once")
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
        rec.long_form = dataclasses.replace(
            rec.long_form, window_seconds=args.window_seconds,
            overlap_seconds=min(LongFormConfig.overlap_seconds, args.window_seconds / 5),
            max_segment_seconds=args.max_segment_seconds,
            pause_seconds=args.pause_seconds).check()
        if args.format == "srt" and args.output_dir is None and len(items) > 1:
            raise ValueError("--format srt for more than one recording needs --output-dir")
    except (ModelDirError, ValueError, FileNotFoundError) as exc:
        print(f"speechmoe-transcribe: error: {exc}", file=sys.stderr)
        return 2
    if not items:
        print("speechmoe-transcribe: error: no recordings given", file=sys.stderr)
        return 2
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    failed = done = 0
    audio = 0.0
    pending: list[AudioInput] = []
    pending_seconds = 0.0
    bar = tqdm(total=len(items), unit="file", disable=len(items) <= 10, file=sys.stderr)
    taken: set = set()  # output file names given so far

    def emit(r: Transcript, streamed: bool = False):
        nonlocal done
        done += 1
        if args.output_dir is not None:
            out = args.output_dir / (output_name(r.name, taken) + SUFFIX[args.format])
            atomic_write_text(out, render(r, args.format))
        elif not streamed:
            sys.stdout.write(render(r, args.format))
            sys.stdout.flush()

    def flush():
        nonlocal pending, pending_seconds
        if pending:
            for r in rec.transcribe(pending, batch_seconds=args.batch_seconds):
                emit(r)
            bar.update(len(pending))
        pending, pending_seconds = [], 0.0

    def fail(name, path, exc):
        nonlocal failed
        failed += 1
        bar.update(1)
        where = "" if name == str(path) else f"{name}: "  # a wav.scp key, then the path
        tqdm.write(f"speechmoe-transcribe: {where}{exc}", file=sys.stderr)

    for name, path in items:
        try:
            a = dataclasses.replace(rec.prepare(path), name=name)
            if a.long:
                flush()  # the results keep the order given
                segs = []
                stream = args.format == "segments" and args.output_dir is None
                for seg in rec.segments(a):
                    segs.append(seg)
                    if stream:
                        print(segment_line(seg), flush=True)
                emit(rec.joined(name, segs, a.seconds), streamed=stream)
                audio += a.seconds
                bar.update(1)
                continue
        except AudioError as exc:
            fail(name, path, exc)
            continue
        pending.append(a)
        pending_seconds += a.seconds
        audio += a.seconds
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
