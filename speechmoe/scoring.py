"""Error rates with kaldialign, and the files a decoding run leaves behind.

For every (test set, method) a directory with:
  recogs.txt   utt_id <TAB> ref=... <TAB> hyp=...
  errs.txt     per-utterance alignment (ref / hyp pairs, * for a gap) and counts
               of the utterances with errors
  utt_errors.tsv  utt_id <TAB> errors <TAB> reference tokens, every utterance
  summary.txt  the error rate with insertions, deletions, substitutions
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Mapping, Sequence

from speechmoe.lang.tokenizer import scoring_tokens

EPS = "*"


class EmptyScoreError(ValueError):
    """An error rate asked for over zero utterances or zero reference tokens."""


@dataclass
class ErrorStats:
    ref_len: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    utts: int = 0
    utts_with_errors: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def rate(self) -> float:
        """Error rate in percent; an error over no utterance or no reference token (a
        rate over nothing is not 0)."""
        if self.utts == 0 or self.ref_len == 0:
            raise EmptyScoreError(f"an error rate over {self.utts} utterances and "
                                  f"{self.ref_len} reference tokens is undefined")
        return 100.0 * self.errors / self.ref_len

    def __add__(self, other: "ErrorStats") -> "ErrorStats":
        """The counts of two scorings together (a set made of both)."""
        return ErrorStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def to_dict(self) -> dict:
        return {**asdict(self), "errors": self.errors,
                "rate": round(self.rate, 3) if self.ref_len else None}


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str]]:
    import kaldialign

    return kaldialign.align(list(ref), list(hyp), EPS)


class MissingHypothesisError(ValueError):
    """A reference utterance without a hypothesis (a decoding that did not finish)."""


def score(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]],
          out_dir: Path | None = None, title: str = "") -> ErrorStats:
    """Align every utterance of ``refs``; write recogs/errs/summary under out_dir if given.

    Every reference needs a hypothesis (an empty one is fine: all deletions); a missing
    one raises MissingHypothesisError naming it, and so does an empty ``refs``."""
    missing = [u for u in refs if u not in hyps]
    if missing:
        raise MissingHypothesisError(f"{len(missing)} of {len(refs)} utterances have no "
                                     f"hypothesis, e.g. {sorted(missing)[:5]}")
    if not refs:
        raise EmptyScoreError(f"nothing to score{f' ({title})' if title else ''}: "
                              "no utterances")
    stats = ErrorStats()
    recog_lines, err_lines, count_lines = [], [], []
    for utt in sorted(refs):
        ref, hyp = list(refs[utt]), list(hyps[utt])
        pairs = align(ref, hyp)
        ins = sum(1 for r, _ in pairs if r == EPS)
        dels = sum(1 for _, h in pairs if h == EPS)
        subs = sum(1 for r, h in pairs if r != h and EPS not in (r, h))
        stats.ref_len += len(ref)
        stats.ins += ins
        stats.dels += dels
        stats.subs += subs
        stats.utts += 1
        stats.utts_with_errors += int(ins + dels + subs > 0)
        recog_lines.append(f"{utt}\tref={' '.join(ref)}\thyp={' '.join(hyp)}\n")
        count_lines.append(f"{utt}\t{ins + dels + subs}\t{len(ref)}\n")
        if ins + dels + subs:
            shown = " ".join(r if r == h else f"({r}->{h})" for r, h in pairs)
            err_lines.append(f"{utt}\tS={subs} D={dels} I={ins}\t{shown}\n")
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recogs.txt").write_text("".join(recog_lines), encoding="utf-8")
        (out_dir / "errs.txt").write_text("".join(err_lines), encoding="utf-8")
        # per utterance: id, errors, reference tokens (paired comparisons of systems)
        (out_dir / "utt_errors.tsv").write_text("".join(count_lines), encoding="utf-8")
        rate = f"{stats.rate:.2f}" if stats.ref_len else "undefined (no reference tokens)"
        (out_dir / "summary.txt").write_text(
            f"{title}\n%ER {rate} [ {stats.errors} / {stats.ref_len}, {stats.ins} ins, "
            f"{stats.dels} del, {stats.subs} sub ]\n{stats.utts_with_errors} of {stats.utts} "
            f"utterances with errors\n", encoding="utf-8")
        (out_dir / "summary.json").write_text(json.dumps(stats.to_dict(), indent=1))
    if stats.ref_len == 0:
        raise EmptyScoreError(f"nothing to score{f' ({title})' if title else ''}: the "
                              f"{stats.utts} references are all empty")
    return stats


def read_utt_errors(path: str | Path) -> list[tuple[str, int, int]]:
    """utt_errors.tsv as score() writes it: [(utterance, errors, reference tokens)], in
    the file's order."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        utt, errors, ref = line.split("\t")
        rows.append((utt, int(errors), int(ref)))
    return rows


def read_text_file(path: Path) -> dict[str, list[str]]:
    """A Kaldi text file (``utt word word ...``) or speechmoe-transcribe's output
    (``name<TAB>text``): {utterance: words}. A repeated utterance is an error."""
    out: dict[str, list[str]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, text = line.partition("\t") if "\t" in line else line.partition(" ")
        if key in out:
            raise ValueError(f"{path}:{n}: utterance {key!r} is there twice")
        out[key] = text.split()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """python -m speechmoe.scoring REF HYP [--metric CER|WER] [--out-dir DIR]"""
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m speechmoe.scoring",
        description="Score hypotheses against references: both Kaldi text files "
                    "('utt word word ...') or speechmoe-transcribe output ('name<TAB>text'). "
                    "Every reference needs a hypothesis; extra hypotheses are an error too.")
    p.add_argument("ref", type=Path)
    p.add_argument("hyp", type=Path)
    p.add_argument("--metric", choices=["CER", "WER"], default="CER",
                   help="CER: a Chinese character or an English word is one token (default)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="also write recogs.txt, errs.txt, utt_errors.tsv and summary.txt")
    args = p.parse_args(argv)
    try:
        refs, hyps = read_text_file(args.ref), read_text_file(args.hyp)
        extra = sorted(set(hyps) - set(refs))
        if extra:
            raise ValueError(f"{args.hyp}: {len(extra)} utterances are not in {args.ref}, "
                             f"e.g. {extra[:5]}")
        stats = score({u: scoring_tokens(w, args.metric) for u, w in refs.items()},
                      {u: scoring_tokens(w, args.metric) for u, w in hyps.items()},
                      args.out_dir, title=f"{args.hyp} against {args.ref}")
    except (OSError, ValueError) as exc:
        print(f"python -m speechmoe.scoring: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.metric} {stats.rate:.2f}% [ {stats.errors} / {stats.ref_len}, {stats.ins} ins, "
          f"{stats.dels} del, {stats.subs} sub ] over {stats.utts} utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
