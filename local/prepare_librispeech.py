#!/usr/bin/env python3
"""Stage 0 of egs/librispeech: LibriSpeech -> lhotse manifests and the LM text.

    local/prepare_librispeech.py --corpus-dir /data/corpora --out-dir data \\
        --train-parts train-clean-100 --eval-sets dev_clean dev_other test_clean test_other

--corpus-dir is the directory that CONTAINS LibriSpeech/ (where the openslr.org/12
archives were unpacked; the LibriSpeech dir itself is accepted too). Expected tree:

    LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac     16 kHz flac
    LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt      "<UTT> <TEXT>" lines

for every part named by --train-parts and --eval-sets (a set is its part with "_" for
"-": dev_clean is dev-clean). A missing part stops the script at once with the list of
what is missing and where to get it; nothing is downloaded.

Every utterance is checked first (audio missing, unreadable, empty, zero-length or not
16 kHz; a flac without a transcript line; an empty transcript; a duplicate id) and the
corpus goes through lhotse's recipe (`lhotse.recipes.librispeech.prepare_librispeech`),
on a view of the corpus without the bad files when one would stop it
(speechmoe.data.lhotse_prep); the manifests point at the real files. Transcripts are
normalised with --text-norm (speechmoe.data.manifests.NORMALIZERS; `lower`: words in
lower case, apostrophes kept). Every excluded utterance is reported by file and reason,
with a count per reason, in <out-dir>/manifests/excluded_<set>.txt.

Sets: --train-set (default train: the --train-parts together) and one set per
--eval-sets name. The LM text (text/lm_text.txt) is, with --lm-corpus auto (the
default), the standard LibriSpeech LM corpus when it lies in --corpus-dir (or in
LibriSpeech/ below it) as librispeech-lm-norm.txt or .txt.gz (openslr.org/11; built by
the corpus's authors from books other than those of the dev and test sets), at most
--lm-max-sentences of its lines spread evenly over it, followed by the training
transcripts; without the file, the training transcripts alone (logged). --lm-corpus
PATH names the file; none uses the transcripts. Outputs under --out-dir:
manifests/{recordings,supervisions,cuts}_<set>.jsonl.gz (one MonoCut per utterance,
id = utterance id, text = words separated by spaces), text/<set>.txt and
text/lm_text.txt. A rerun with the same options skips; with others, it redoes the
stage and says which changed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

from speechmoe.data.lhotse_prep import Part, cuts_from_recipe, read_transcripts, run_recipe, \
    screen
from speechmoe.data.manifests import Excluded, get_normalizer, NORMALIZERS, report_excluded, \
    write_lines, write_manifests
from speechmoe.errors import CorpusLayoutError
from speechmoe.logs import cli_main, script_parser, setup_logger

URL = "https://www.openslr.org/12"
OBTAIN = (f"LibriSpeech is free (CC BY 4.0) at {URL}: download <part>.tar.gz for each part "
          "named above and unpack it in the corpus directory (`tar xzf` makes "
          "LibriSpeech/<part>/), then point the recipe at the directory that contains "
          "LibriSpeech/ (egs/librispeech/db.sh or --corpus-dir). The recipe downloads nothing")
TRAIN_PARTS = ("train-clean-100", "train-clean-360", "train-other-500", "train-clean-5")
EVAL_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "dev-clean-2")
LM_NAMES = ("librispeech-lm-norm.txt", "librispeech-lm-norm.txt.gz")
SAMPLE_RATE = 16000


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--corpus-dir", type=Path, required=True,
                   help="the directory that contains LibriSpeech/")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--train-parts", nargs="+", default=["train-clean-100"],
                   help=f"training parts, space- or comma-separated: {', '.join(TRAIN_PARTS)}")
    p.add_argument("--train-set", default="train", help="name of the training set")
    p.add_argument("--eval-sets", nargs="+",
                   default=["dev_clean", "dev_other", "test_clean", "test_other"],
                   help="dev and test sets, each a part with '_' for '-': "
                        + ", ".join(x.replace("-", "_") for x in EVAL_PARTS))
    p.add_argument("--text-norm", default="lower", choices=sorted(NORMALIZERS))
    p.add_argument("--lm-corpus", default="auto",
                   help="auto (librispeech-lm-norm.txt[.gz] in --corpus-dir if there, else "
                        "the training transcripts), none (the transcripts), or a path")
    p.add_argument("--lm-max-sentences", type=int, default=1_000_000,
                   help="at most this many lines of the LM corpus, spread evenly (0: all)")
    p.add_argument("--num-jobs", type=int, default=2)
    return p


def split_list(values: list[str]) -> list[str]:
    return [x for v in values for x in v.replace(",", " ").split()]


def locate(corpus_dir: Path) -> Path:
    """The LibriSpeech dir (which holds the parts), from what the user pointed at."""
    corpus_dir = corpus_dir.expanduser()
    if (corpus_dir / "LibriSpeech").is_dir():
        return corpus_dir / "LibriSpeech"
    if corpus_dir.is_dir() and any((corpus_dir / p).is_dir()
                                   for p in TRAIN_PARTS + EVAL_PARTS):
        return corpus_dir  # the LibriSpeech dir itself
    if not corpus_dir.is_dir():
        raise CorpusLayoutError(f"LibriSpeech corpus directory {corpus_dir} does not exist. "
                                f"{OBTAIN}.")
    raise CorpusLayoutError(
        f"no LibriSpeech directory in {corpus_dir} (looked for {corpus_dir / 'LibriSpeech'}, "
        f"and for part directories such as {corpus_dir / 'train-clean-100'}). {OBTAIN}.")


def check_layout(root: Path, parts: list[str]) -> None:
    """Each part's dir with transcripts and flac files; all that is missing in one error."""
    missing = []
    for part in parts:
        d = root / part
        if not d.is_dir():
            missing.append(f"{d}/ (the {part} part: {part}.tar.gz)")
            continue
        if next(d.rglob("*.trans.txt"), None) is None:
            missing.append(f"{d}/ has no <spk>/<chapter>/<spk>-<chapter>.trans.txt files")
        if next(d.rglob("*.flac"), None) is None:
            missing.append(f"{d}/ has no .flac files")
    if missing:
        raise CorpusLayoutError(f"the LibriSpeech corpus under {root} is incomplete; "
                                "missing:\n  " + "\n  ".join(missing) + f"\n{OBTAIN}.")


def where_expected(part: str, utt: str) -> Path:
    """Where LibriSpeech keeps utt's audio, relative to the LibriSpeech dir (and so where
    lhotse's recipe looks): <part>/<spk>/<chapter>/<spk>-<chapter>-<n>.flac."""
    return Path(part) / Path(utt.replace("-", "/")).parent / f"{utt}.flac"


def trans_name(rel_dir: Path) -> str:
    return "-".join(rel_dir.parts[1:]) + ".trans.txt" if len(rel_dir.parts) > 1 else \
        "view.trans.txt"


def scan_part(root: Path, part: str, num_jobs: int) -> Part:
    """Pre-check one part (speechmoe.data.lhotse_prep.screen)."""
    d = root / part
    screened = screen(part, d.rglob("*.flac"), read_transcripts(sorted(d.rglob("*.trans.txt"))),
                      expected_audio=lambda utt: str(root / where_expected(part, utt)),
                      expected_transcript=lambda utt: trans_name(
                          where_expected(part, utt).parent),
                      sample_rate=SAMPLE_RATE, num_jobs=num_jobs)
    # a file outside its chapter's dir is not found by lhotse's recipe; the view has it there
    if any(path != root / where_expected(part, utt) for utt, path in screened.usable.items()):
        screened.unsafe = True
    return screened


def view_layout(parts: dict[str, Part]) -> tuple[dict, dict]:
    """The LibriSpeech tree of the usable utterances: (links, transcript files)."""
    links, lines = {}, defaultdict(list)
    for name, part in parts.items():
        for utt, path in sorted(part.usable.items()):
            rel = where_expected(name, utt)
            links[rel] = path
            lines[rel.parent / trans_name(rel.parent)].append(f"{utt} {part.text[utt]}\n")
    return links, {path: "".join(text) for path, text in lines.items()}


def find_lm_corpus(option: str, corpus_dir: Path, root: Path) -> Path | None:
    if option == "none":
        return None
    if option != "auto":
        path = Path(option).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--lm-corpus {path}: no such file (the LibriSpeech LM "
                                    "text, librispeech-lm-norm.txt[.gz] of "
                                    "https://www.openslr.org/11; or auto / none)")
        return path
    for d in (corpus_dir.expanduser(), root):
        for name in LM_NAMES:
            if (d / name).is_file():
                return d / name
    return None


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def lm_corpus_lines(path: Path, max_lines: int, normalize, log):
    """At most max_lines normalised lines of the LM corpus, every k-th (spread over its
    books, which follow one another in the file)."""
    step = 1
    if max_lines > 0:
        with _open_text(path) as f:
            total = sum(1 for _ in f)
        step = max(1, -(-total // max_lines))
        log.info("LM corpus %s: %d lines, every %d-th taken (--lm-max-sentences %d)", path,
                 total, step, max_lines)
    n = 0
    with _open_text(path) as f:
        for i, line in enumerate(f):
            if i % step:
                continue
            words, _ = normalize(line)
            if words:
                yield " ".join(words)
                n += 1
                if 0 < max_lines <= n:
                    break


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out = args.out_dir
    manifests, text_dir = out / "manifests", out / "text"
    log = setup_logger(out / "log" / "prepare_librispeech.log")
    train_parts = split_list(args.train_parts)
    eval_sets = list(dict.fromkeys(split_list(args.eval_sets)))
    for part in train_parts:
        if part not in TRAIN_PARTS:
            raise ValueError(f"--train-parts {part}: not a LibriSpeech training part (one of "
                             f"{', '.join(TRAIN_PARTS)})")
    for name in eval_sets:
        if name.replace("_", "-") not in EVAL_PARTS:
            raise ValueError(f"--eval-sets {name}: not a LibriSpeech dev or test part (one of "
                             f"{', '.join(x.replace('-', '_') for x in EVAL_PARTS)})")
    if args.train_set in eval_sets:
        raise ValueError(f"--train-set {args.train_set} is also in --eval-sets")
    normalize = get_normalizer(args.text_norm)

    root = locate(args.corpus_dir).resolve()
    options = {"corpus": str(root), "train_parts": train_parts, "train_set": args.train_set,
               "eval_sets": eval_sets, "text_norm": args.text_norm,
               "lm_corpus": args.lm_corpus, "lm_max_sentences": args.lm_max_sentences}
    done = manifests / ".librispeech.done"
    if done.is_file():
        try:
            old = json.loads(done.read_text())
        except ValueError:
            old = {}
        if old == options:
            log.info("LibriSpeech manifests exist, made with these options (%s), skipping; "
                     "delete it to redo", done)
            return 0
        changed = {k: (old.get(k), v) for k, v in options.items() if old.get(k) != v}
        log.info("LibriSpeech manifests were made with other options (%s): redoing stage 0",
                 ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
        done.unlink()
    part_of = {name: name.replace("_", "-") for name in eval_sets}
    wanted = train_parts + [part_of[n] for n in eval_sets]
    check_layout(root, wanted)
    log.info("LibriSpeech corpus: %s; %s = %s; %s", root, args.train_set,
             " + ".join(train_parts), " ".join(f"{n} = {part_of[n]}" for n in eval_sets))

    parts = {}
    for part in wanted:
        parts[part] = scan_part(root, part, args.num_jobs)
        if not parts[part].usable:
            raise CorpusLayoutError(f"{root / part}: no usable utterance (see the problems "
                                    "logged above)")

    from lhotse.recipes.librispeech import prepare_librispeech

    prepared = run_recipe(prepare_librispeech, root, parts, out / "librispeech_view",
                          view_layout, log, dataset_parts=wanted, output_dir=None,
                          num_jobs=args.num_jobs)

    sets = {args.train_set: train_parts, **{n: [part_of[n]] for n in eval_sets}}
    cuts_of: dict[str, list] = {}
    for name, members in sets.items():
        cuts, excluded, total, seen = [], [], 0, {}
        for part in members:
            for c in cuts_from_recipe(parts[part], prepared[part], normalize,
                                      "lhotse's prepare_librispeech", language="English"):
                if c.id in seen:  # the same utterance in two training parts
                    parts[part].excluded.append(Excluded(
                        c.id, c.recording.sources[0].source,
                        f"duplicate utterance id (also in {seen[c.id]})"))
                    continue
                seen[c.id] = part
                cuts.append(c)
            excluded += parts[part].excluded
            total += parts[part].total
        report_excluded(log, name, excluded, total, manifests / f"excluded_{name}.txt")
        cuts_of[name] = cuts
        write_manifests(cuts, manifests, name)
        write_lines(text_dir / f"{name}.txt", (f"{c.id}\t{c.supervisions[0].text}" for c in cuts))
        log.info("%s: %d utterances, %.2f h, %d speakers", name, len(cuts),
                 sum(c.duration for c in cuts) / 3600,
                 len({c.supervisions[0].speaker for c in cuts}))

    # The LM text: never a dev or test transcript.
    train_text = [c.supervisions[0].text for c in cuts_of[args.train_set]]
    lm_corpus = find_lm_corpus(args.lm_corpus, args.corpus_dir, root)
    if lm_corpus is None:
        log.info("LM text: the %d training transcripts (%s)", len(train_text),
                 "--lm-corpus none" if args.lm_corpus == "none" else
                 f"no {' or '.join(LM_NAMES)} in {args.corpus_dir} or {root}; the standard "
                 "LibriSpeech LM text is at https://www.openslr.org/11")
        lines = train_text
    else:
        log.info("LM text: the LibriSpeech LM corpus %s, then the %d training transcripts",
                 lm_corpus, len(train_text))
        lines = (line for src in (lm_corpus_lines(lm_corpus, args.lm_max_sentences,
                                                  normalize, log), train_text)
                 for line in src)
    n = write_lines(text_dir / "lm_text.txt", lines)
    log.info("LM text: %d sentences -> %s", n, text_dir / "lm_text.txt")
    done.write_text(json.dumps(options) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
