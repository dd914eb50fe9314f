#!/usr/bin/env python3
"""Stage 0 of egs/aishell2: AISHELL-2 (iOS) -> lhotse manifests and the LM text.

    local/prepare_aishell2.py --corpus-dir /data/corpora --out-dir data --num-dev 1500

--corpus-dir is the directory that CONTAINS AISHELL-2/ (what lhotse's recipe
takes; the AISHELL-2 dir itself is accepted too). Expected tree:

    AISHELL-2/iOS/data/trans.txt                 train: "<UTT><TAB><transcript>" lines
    AISHELL-2/iOS/data/wav/<SPK>/<UTT>.wav       16 kHz wav
    AISHELL-2/iOS/dev/trans.txt,  dev/wav/<SPK>/<UTT>.wav
    AISHELL-2/iOS/test/trans.txt, test/wav/<SPK>/<UTT>.wav

A missing piece stops the script at once with the list of what is missing.
Otherwise every utterance is checked first (audio missing, unreadable,
zero-length or not 16 kHz; a wav without a transcript; a duplicate id) and the
corpus goes through lhotse's AISHELL-2 recipe
(`lhotse.recipes.aishell2.prepare_aishell2`, which upper-cases English and
strips some punctuation). If a file would break that recipe (it reads every
wav), it is given a view of the corpus without the bad files, and the
manifests point at the real files (speechmoe.data.lhotse_prep, shared with
every stage 0 built on a lhotse recipe). Transcripts are then normalised
(speechmoe.data.manifests.normalize_mandarin: jieba words, numbers spoken out,
English words in upper case); an empty or unspeakable one excludes its
utterance. Every excluded utterance is reported by file and reason, with a
count per reason, in <out-dir>/manifests/excluded_<set>.txt.

Sets: train (AISHELL-2 iOS train minus --num-dev utterances' worth of whole
speakers), train_dev (those held-out speakers: validation and acoustic-scale
tuning), dev_ios and test_ios (the AISHELL-2 iOS dev and test sets, the paper's
benchmark). Outputs under --out-dir: manifests/{recordings,supervisions,cuts}_<set>
.jsonl.gz (one MonoCut per utterance, id = utterance id, text = words separated
by spaces), text/<set>.txt, and text/lm_text.txt (the train transcripts only).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

from speechmoe.data.lhotse_prep import Part, cuts_from_recipe, read_transcripts, run_recipe, \
    screen
from speechmoe.data.manifests import normalize_mandarin, report_excluded, write_lines, \
    write_manifests
from speechmoe.errors import CorpusLayoutError
from speechmoe.logs import cli_main, script_parser, setup_logger

OBTAIN = ("AISHELL-2 is licensed, not downloadable here: apply for it (free for academic "
          "use) at https://www.aishelltech.com/aishell_2, then point the recipe at the "
          "directory that contains AISHELL-2/ (egs/aishell2/db.sh or --corpus-dir)")
# lhotse's part name -> (its directory under AISHELL-2/iOS, our set name)
PARTS = {"train": ("data", "train"), "dev": ("dev", "dev_ios"), "test": ("test", "test_ios")}
HELDOUT_SET = "train_dev"
SAMPLE_RATE = 16000


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--corpus-dir", type=Path, required=True,
                   help="the directory that contains AISHELL-2/")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--num-dev", type=int, default=1500,
                   help="utterances (whole speakers) held out of train as train_dev")
    p.add_argument("--seed", type=int, default=0, help="choice of the held-out speakers")
    p.add_argument("--num-jobs", type=int, default=2)
    return p


def locate(corpus_dir: Path) -> Path:
    """The directory that contains AISHELL-2/, from what the user pointed at."""
    corpus_dir = corpus_dir.expanduser()
    if (corpus_dir / "AISHELL-2" / "iOS").is_dir():
        return corpus_dir
    # the AISHELL-2 dir itself, or its iOS dir, are taken for what they are
    if corpus_dir.name == "AISHELL-2" and (corpus_dir / "iOS").is_dir():
        return corpus_dir.parent
    if corpus_dir.name == "iOS" and corpus_dir.parent.name == "AISHELL-2":
        return corpus_dir.parent.parent
    if not corpus_dir.is_dir():
        raise CorpusLayoutError(f"AISHELL-2 corpus directory {corpus_dir} does not exist. "
                                f"{OBTAIN}.")
    raise CorpusLayoutError(
        f"no AISHELL-2/iOS directory in {corpus_dir} (looked for "
        f"{corpus_dir / 'AISHELL-2' / 'iOS'}). Expected AISHELL-2/iOS/data/{{trans.txt,wav/}}, "
        f"AISHELL-2/iOS/dev/... and AISHELL-2/iOS/test/... under it. {OBTAIN}.")


def check_layout(root: Path) -> None:
    """Every part's trans.txt and a wav/ dir with files; all that is missing in one error."""
    ios = root / "AISHELL-2" / "iOS"
    missing = []
    for sub, _ in PARTS.values():
        trans, wav = ios / sub / "trans.txt", ios / sub / "wav"
        if not trans.is_file():
            missing.append(f"{trans} (transcripts)")
        if not wav.is_dir():
            missing.append(f"{wav}/ (audio: wav/<SPK>/<UTT>.wav)")
        elif next(wav.rglob("*.wav"), None) is None:
            missing.append(f"{wav}/ has no .wav files")
    if missing:
        raise CorpusLayoutError(
            f"the AISHELL-2 corpus under {root} is incomplete; missing:\n  "
            + "\n  ".join(missing) + f"\n{OBTAIN}.")


def scan_part(root: Path, part: str, num_jobs: int) -> Part:
    """Pre-check one part (speechmoe.data.lhotse_prep.screen): its usable utterances and
    problems."""
    part_dir = root / "AISHELL-2" / "iOS" / PARTS[part][0]
    return screen(part, (part_dir / "wav").rglob("*.wav"),
                  read_transcripts([part_dir / "trans.txt"]),
                  expected_audio=lambda utt: str(part_dir / "wav" / "*" / f"{utt}.wav"),
                  expected_transcript=lambda utt: "trans.txt", sample_rate=SAMPLE_RATE,
                  num_jobs=num_jobs)


def view_layout(parts: dict[str, Part]) -> tuple[dict, dict]:
    """The corpus tree lhotse's recipe reads, usable utterances only: (links, files)."""
    links, files = {}, {}
    for part, (sub, _) in PARTS.items():
        part_dir = Path("AISHELL-2") / "iOS" / sub
        lines = []
        for utt, path in parts[part].usable.items():
            lines.append(f"{utt}\t{parts[part].text[utt]}\n")
            links[part_dir / "wav" / path.parent.name / path.name] = path
        files[part_dir / "trans.txt"] = "".join(lines)
    return links, files


def heldout_speakers(cuts: list, num_dev: int, seed: int) -> set[str]:
    """Whole speakers, in a seeded random order, until they hold num_dev utterances."""
    per_spk = defaultdict(int)
    for c in cuts:
        per_spk[c.supervisions[0].speaker] += 1
    speakers = sorted(per_spk)
    random.Random(seed).shuffle(speakers)
    chosen, n = set(), 0
    for spk in speakers:
        if n >= num_dev:
            break
        chosen.add(spk)
        n += per_spk[spk]
    if len(chosen) >= len(speakers):
        raise ValueError(f"--num-dev {num_dev} would hold out every training speaker "
                         f"({len(speakers)} speakers, {len(cuts)} utterances); lower it")
    return chosen


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out = args.out_dir
    manifests, text_dir = out / "manifests", out / "text"
    log = setup_logger(out / "log" / "prepare_aishell2.log")
    done = manifests / ".aishell2.done"
    if done.is_file():
        log.info("AISHELL-2 manifests exist (%s), skipping; delete it to redo", done)
        return 0
    if args.num_dev < 1:
        raise ValueError("--num-dev must be at least 1 (train_dev validates and tunes)")

    root = locate(args.corpus_dir).resolve()
    check_layout(root)
    log.info("AISHELL-2 corpus: %s", root / "AISHELL-2")

    parts = {}
    for part in PARTS:
        parts[part] = scan_part(root, part, args.num_jobs)
        if not parts[part].usable:
            raise CorpusLayoutError(f"{root / 'AISHELL-2' / 'iOS' / PARTS[part][0]}: no "
                                    "usable utterance (see the problems logged above)")

    # lhotse's recipe on the corpus itself, or on a view without the files it cannot read
    # (speechmoe.data.lhotse_prep).
    from lhotse.recipes.aishell2 import prepare_aishell2

    prepared = run_recipe(prepare_aishell2, root, parts, out / "aishell2_view", view_layout,
                          log, output_dir=None, num_jobs=args.num_jobs)

    sets: dict[str, list] = {}
    for part, (_, name) in PARTS.items():
        sets[name] = cuts_from_recipe(parts[part], prepared[part], normalize_mandarin,
                                      "lhotse's prepare_aishell2", language="Chinese")
        report_excluded(log, name, parts[part].excluded, parts[part].total,
                        manifests / f"excluded_{name}.txt")

    held = heldout_speakers(sets["train"], args.num_dev, args.seed)
    sets[HELDOUT_SET] = [c for c in sets["train"] if c.supervisions[0].speaker in held]
    sets["train"] = [c for c in sets["train"] if c.supervisions[0].speaker not in held]
    log.info("held out %d training speakers (%d utterances) as %s", len(held),
             len(sets[HELDOUT_SET]), HELDOUT_SET)

    for name, cuts in sets.items():
        write_manifests(cuts, manifests, name)
        write_lines(text_dir / f"{name}.txt", (f"{c.id}\t{c.supervisions[0].text}" for c in cuts))
        hours = sum(c.duration for c in cuts) / 3600
        log.info("%s: %d utterances, %.2f h, %d speakers", name, len(cuts), hours,
                 len({c.supervisions[0].speaker for c in cuts}))
    # The LM learns from the training transcripts only: never train_dev, dev or test.
    n = write_lines(text_dir / "lm_text.txt", (c.supervisions[0].text for c in sets["train"]))
    log.info("LM text: %d sentences -> %s", n, text_dir / "lm_text.txt")
    done.touch()
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
