#!/usr/bin/env python3
"""Scoring stage: error rates of every decoding, per test set and method.

    local/score.py --exp-dir exp/moe_4e --lang-dir data/lang --cuts-dir data/fbank \
        --sets test_read test_chat test_spon

Reads <exp-dir>/decode/<model>/<method>/<set>/hyp.txt (local/decode.py) and writes
next to it recogs.txt, errs.txt (per-utterance alignments) and summary.txt, then
<exp-dir>/results.json:

  {test set: {method: {"metric": ..., "rate": %, "utterances": n, "ref_tokens": n}}}

Every utterance of a set is scored by every method: a set without a method's
hypotheses, an utterance without a hypothesis, or a reference that cannot be turned
into the method's units stops scoring with an error naming it; nothing is left out.

The metric of each method, for a syllable lang dir (lang.json: metric CER):
  wfst        CER: each Chinese character and each English word is one token.
  ctc_greedy  toned-syllable ER: the CTC output is a sequence of units (syllables and
              English phones), not characters; it is scored against the transcript's
              lexicon pronunciation. With one syllable per character it is the CER
              that a perfect syllable-to-character converter would reach.
results_detail.json adds, for both methods, the toned and toneless syllable error
rates (the same units for both) and the error counts.
For a BPE lang dir (metric WER, or CER if the lang stage was asked for it) both
methods are scored on words: the greedy pieces are joined into words first;
results_detail.json adds the piece error rate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from lhotse import CutSet

from speechmoe.data.corpus import corpus_record
from speechmoe.data.dataset import cut_words
from speechmoe.expdir import DecodeDir, ExpDir
from speechmoe.lang.tokenizer import OOVError, make_tokenizer, read_lang_info, scoring_tokens
from speechmoe.logs import cli_main, script_parser, setup_logger
from speechmoe.scoring import MissingHypothesisError, score


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--cuts-dir", type=Path, required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--model", default="", help="decode/<model> dir (default: the newest)")
    return p


def read_hyps(path: Path) -> dict[str, list[str]]:
    out = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            utt, _, hyp = line.rstrip("\n").partition("\t")
            out[utt] = hyp.split()
    return out


def toneless(units: list[str]) -> list[str]:
    return [re.sub(r"[1-5]$", "", u) for u in units]


SYLLABLE_METRIC = "toned-syllable ER"
METHODS = ("ctc_greedy", "wfst")


class ScoringError(ValueError):
    """A test set that cannot be scored completely."""


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    exp = ExpDir(args.exp_dir)
    log = setup_logger(exp.log_file("score"))
    finished = exp.finished_decodes()
    if args.model:
        decode_dir = DecodeDir(exp.decode_root / args.model)
    elif finished:
        decode_dir = finished[-1]
    else:
        log.error("%s: no finished decoding (run local/decode.py first)", exp.decode_root)
        return 1
    tok = make_tokenizer(args.lang_dir)
    lang_metric = read_lang_info(args.lang_dir)["metric"]
    syllables = not hasattr(tok, "words_from_units")  # BPE pieces join back into words
    kind = "syllable" if syllables else "piece"

    results, detail = {}, {"model": decode_dir.model,
                           "corpus": corpus_record(args.cuts_dir.resolve().parent)}
    lines = [f"{'test set':<12} {'method':<11} {'metric':<18} {'rate':>7} "
             + (f"{'toned SER':>10} {'toneless':>9} utts" if syllables else
                f"{'piece ER':>10} utts")]
    for name in args.sets:
        path = args.cuts_dir / f"cuts_{name}.jsonl.gz"
        if not path.is_file():
            raise ScoringError(f"{path}: not found (run the feature stage first)")
        cuts = CutSet.from_file(path)
        ref_words = {c.id: cut_words(c) for c in cuts}
        if not ref_words:
            raise ScoringError(f"{path}: no utterances to score")
        ref_units = {}
        for utt, words in ref_words.items():
            try:
                ref_units[utt] = tok.units(words)
            except OOVError as exc:
                raise ScoringError(f"{name}: utterance {utt}: the reference has no {kind} "
                                   f"form ({exc}); it cannot be scored") from None
        for method in METHODS:
            hyp_path = decode_dir.hyps(method, name)
            if not hyp_path.is_file():
                raise ScoringError(f"{hyp_path}: not found: {name} was not decoded by "
                                   f"{method} (run the decoding stage)")
            hyps = read_hyps(hyp_path)
            out_dir = hyp_path.parent
            title = f"{decode_dir.model} {method} {name}"
            try:
                if method == "ctc_greedy" and syllables:
                    hyp_units = hyps
                    metric = SYLLABLE_METRIC
                    main_stats = score(ref_units, hyp_units, out_dir, f"{title}: {metric}")
                else:
                    if method == "ctc_greedy":  # BPE pieces join into words
                        hyp_units = hyps
                        hyps = {u: tok.words_from_units(h) for u, h in hyps.items()}
                    else:
                        hyp_units = {u: hyp_unit_form(tok, h) for u, h in hyps.items()}
                    metric = lang_metric
                    main_stats = score(
                        {u: scoring_tokens(w, metric) for u, w in ref_words.items()},
                        {u: scoring_tokens(h, metric) for u, h in hyps.items()},
                        out_dir, f"{title}: {metric}")
                toned = score(ref_units, hyp_units)
            except MissingHypothesisError as exc:
                raise ScoringError(f"{hyp_path}: {exc}") from None
            entry = {"metric": metric, "rate": round(main_stats.rate, 2),
                     "utterances": main_stats.utts, "ref_tokens": main_stats.ref_len}
            results.setdefault(name, {})[method] = entry
            if not syllables:
                detail.setdefault(name, {})[method] = {
                    **entry, "piece_er": round(toned.rate, 2), "counts": main_stats.to_dict()}
                lines.append(f"{name:<12} {method:<11} {metric:<18} {main_stats.rate:>6.2f}% "
                             f"{toned.rate:>9.2f}% {main_stats.utts}")
                continue
            tl = score({u: toneless(x) for u, x in ref_units.items()},
                       {u: toneless(x) for u, x in hyp_units.items()})
            detail.setdefault(name, {})[method] = {
                **entry, "toned_syllable_er": round(toned.rate, 2),
                "toneless_syllable_er": round(tl.rate, 2), "counts": main_stats.to_dict()}
            lines.append(f"{name:<12} {method:<11} {metric:<18} {main_stats.rate:>6.2f}% "
                         f"{toned.rate:>9.2f}% {tl.rate:>8.2f}% {main_stats.utts}")
    exp.results.write_text(json.dumps(results, indent=1) + "\n")
    exp.results_detail.write_text(json.dumps(detail, indent=1, ensure_ascii=False) + "\n")
    table = "\n".join(lines)
    decode_dir.summary.write_text(table + "\n", encoding="utf-8")
    log.info("results of %s:\n%s", decode_dir.model, table)
    return 0


def hyp_unit_form(tok, words: list[str]) -> list[str]:
    """A WFST hypothesis (lexicon words) as units: its words' first pronunciations."""
    try:
        return tok.units(words)
    except OOVError:
        return [u for w in words for u in (tok.lexicon.get(w) or ["<oov>"])]


if __name__ == "__main__":
    sys.exit(cli_main(main))
