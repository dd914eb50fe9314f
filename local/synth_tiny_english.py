#!/usr/bin/env python3
"""A tiny English corpus in Kaldi data-dir layout, synthesized with espeak-ng: the corpus a
newcomer tries egs/TEMPLATE on before their own (docs/adding-a-corpus.md).

    local/synth_tiny_english.py --out-dir /tmp/tiny_en            # train/ dev/ test/
    cd egs/mycorpus && ./run.sh --corpus-dir /tmp/tiny_en ...     # the docs' smoke run

The text is real English prose: sentences of 5-14 plain words from the documentation
that ships with CPython (the language reference's ``pydoc_data.topics`` and the standard
library's docstrings, about 2,400 sentences with Python 3.11; another Python version
ships other text, so other sentences and numbers), shuffled with --seed. Each set's
utterances are read by espeak-ng's en-us voice with voice variants as speakers and
varied speed and pitch, resampled to 16 kHz. Sets: train (--num-train), dev (--num-dev),
test (--num-test), disjoint sentences; ``<set>/wav.scp``, ``text`` (the sentence as
written: the template's ``lower`` normaliser does the rest), ``utt2spk``, and the wavs
under ``<out-dir>/wav/``. --bad-file adds one zero-byte wav to train, listed like the
others, to see the importer report and exclude it.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from speechmoe.data.synth import SynthJob, synthesize
from speechmoe.logs import cli_main, script_parser, setup_logger

SPEAKERS = ["m1", "m3", "f2", "f4", "m5", "f1"]  # espeak-ng variants of en-us
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?,?")


def sentences(min_words: int = 5, max_words: int = 14) -> list[str]:
    """The plain sentences of the English prose that ships with CPython: the language
    reference's topics (pydoc_data) and the docstrings of the standard library's modules,
    each sentence once, sorted."""
    import ast
    import sysconfig

    from pydoc_data.topics import topics

    prose = list(topics.values())
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        prose += [d for node in ast.walk(tree) if isinstance(node, (
            ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and (d := ast.get_docstring(node))]
    out = set()
    for s in re.split(r"(?<=[.!?]) ", re.sub(r"\s+", " ", " ".join(prose))):
        words = s[:-1].split()
        if s.endswith(".") and min_words <= len(words) <= max_words and \
                all(WORD.fullmatch(w) for w in words):
            out.add(s)
    return sorted(out)


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, show_defaults=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--num-train", type=int, default=400)
    p.add_argument("--num-dev", type=int, default=20)
    p.add_argument("--num-test", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bad-file", action="store_true",
                   help="add a zero-byte wav to train (the importer must report it)")
    p.add_argument("--num-jobs", type=int, default=2)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log = setup_logger(out / "synth.log")
    pool = sentences()
    need = args.num_train + args.num_dev + args.num_test
    if min(args.num_train, args.num_dev, args.num_test) < 1 or need > len(pool):
        log.error("asked for %d train, %d dev, %d test sentences: each set needs at least 1 "
                  "and the text has %d", args.num_train, args.num_dev, args.num_test, len(pool))
        return 1
    random.Random(args.seed).shuffle(pool)
    sizes = {"train": args.num_train, "dev": args.num_dev, "test": args.num_test}
    jobs, listing, start = [], {}, 0
    rng = random.Random(args.seed + 1)
    for name, n in sizes.items():
        listing[name] = []
        for i, text in enumerate(pool[start:start + n]):
            spk = SPEAKERS[i % len(SPEAKERS)] if name == "train" else \
                SPEAKERS[(i + 3) % len(SPEAKERS)]
            utt = f"{spk}-{name}-{i:04d}"
            wav = out / "wav" / name / f"{utt}.wav"
            jobs.append(SynthJob(utt, text, spk, rng.randint(140, 190), rng.randint(35, 65),
                                 wav, voice="en-us"))
            listing[name].append((utt, spk, text, wav))
        start += n
    failures = synthesize(jobs, num_jobs=args.num_jobs, desc="espeak-ng")
    if failures:
        for utt, err in sorted(failures.items()):
            log.error("%s: %s", utt, err)
        return 1
    if args.bad_file:
        bad = out / "wav" / "train" / "m1-train-bad.wav"
        bad.write_bytes(b"")
        listing["train"].append(("m1-train-bad", "m1", "this file is empty", bad))
    for name, rows in listing.items():
        d = out / name
        d.mkdir(exist_ok=True)
        rows = sorted(rows)
        (d / "wav.scp").write_text("".join(f"{u} {w.resolve()}\n" for u, _, _, w in rows))
        (d / "text").write_text("".join(f"{u} {t}\n" for u, _, t, _ in rows))
        (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, _, _ in rows))
        log.info("%s: %d utterances -> %s", name, len(rows), d)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
