"""Word n-gram language models: the command line.

    python -m speechmoe.lang.ngram --order 5 [--cutoffs 0,1,2] [--prune 1e-8] [--no-unk] \\
        TEXT_FILE OUT.arpa

Import each piece from where it lives:
  Kneser-Ney estimation, count cutoffs   speechmoe.lang.kneser_ney.estimate_kneser_ney
  relative-entropy pruning               speechmoe.lang.prune.entropy_prune
  the ARPA writer / reader               speechmoe.lang.arpa.write_arpa / load_arpa
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Sequence

from speechmoe.lang.kneser_ney import estimate_kneser_ney

log = logging.getLogger(__name__)


def _read_sentences(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if words:
                yield words


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmoe.lang.ngram",
        description="Estimate an interpolated modified Kneser-Ney word n-gram model and "
                    "write it in ARPA format. TEXT_FILE: one sentence per line, words "
                    "separated by spaces (blank lines are skipped).")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--cutoffs", default=None,
                        help="comma-separated minimum raw count per order, SRILM -gtNmin "
                             "style (e.g. 0,1,2 drops trigrams seen once); default: none")
    parser.add_argument("--prune", type=float, default=0.0,
                        help="relative-entropy pruning threshold (e.g. 1e-8); default 0: off")
    parser.add_argument("--no-unk", dest="unk", action="store_false",
                        help="leave <unk> out of the vocabulary")
    parser.add_argument("text_file")
    parser.add_argument("out_arpa")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cutoffs = None
    if args.cutoffs:
        cutoffs = [int(c) for c in args.cutoffs.split(",")]
    t0 = time.perf_counter()
    lm = estimate_kneser_ney(_read_sentences(args.text_file), order=args.order,
                             cutoffs=cutoffs, prune_threshold=args.prune, unk=args.unk)
    for n, (c, d) in enumerate(zip(lm.num_ngrams(), lm.discounts), 1):
        log.info("order %d: %d n-grams, discounts D1 %.4f D2 %.4f D3+ %.4f", n, c, *d)
    lm.write_arpa(args.out_arpa)
    log.info("wrote %s in %.1f s total; training-set perplexity %.2f", args.out_arpa,
             time.perf_counter() - t0, lm.training_perplexity)
    return 0


if __name__ == "__main__":
    sys.exit(main())

