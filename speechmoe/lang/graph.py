"""Decoding graphs for CTC: the token topology T, the lexicon L, the grammar G and TLG.

This is the k2-free construction (the approach of icefall's ``prepare_lang_fst.py``),
written with kaldifst (OpenFst) and kaldilm (ARPA -> G); the graphs are decoded by
``speechmoe.decode.wfst.WfstDecoder`` (kaldi-decoder's FasterDecoder + DecodableCtc).

One function per graph:

    T    make_token_topology   the CTC topology (blank, collapsed repeats); exact, N^2 arcs
         make_compact_token_topology  the compact one (O(N) arcs, shares G's states; the
                               default: see its doc and build_tlg)
    L    make_lexicon_fst      tokens -> words, from lexicon.txt
    G    make_grammar_fst      the word n-gram LM (ARPA, kaldilm's arpa2fst)
    LG   compose_lg            determinized and minimized L o G
    TLG  compose_tlg           T o LG; build_tlg runs the whole chain for a lang dir
         (speechmoe.lang.token_start: the TLG for sherpa-onnx, words on their last token)

The lang dir's text files (tokens.txt, lexicon.txt, words.txt) and the disambiguation
symbols are speechmoe.lang.symbols.

Label spaces (N = number of real tokens, blank included; D = number of disambiguation
symbols #0..#D-1):

    T input  (= TLG input)  token id + 1 (DecodableCtc reads column ilabel - 1; 0 = epsilon).
                            While TLG is built, #k is N + 1 + k (and the compact T's
                            "leave" arc N + 1 + D); these are turned into epsilon once TLG
                            is determinized, so the final graph only has labels 0..N on
                            its input side.
    T output (= L input)    token id (the blank is never output, so id 0 is free for epsilon);
                            #k is N + k.
    L output (= G, TLG out) word id from words.txt.

Build recipe (Kaldi's mkgraph.sh with the CTC topology in place of H o C):

    LG  = minimize_encoded(determinize_star(L_disambig o G))
    TLG = determinize_star(T o LG), then #k input labels -> epsilon (see compose_tlg)

T carries #k:#k self-loops (the standard T on every state, the compact one on its shared
state, which every token's run leaves to), so the disambiguation symbols of LG survive
into TLG's input side during determinization (homophones stay distinguishable and the
graph stays functional); they are removed afterwards, as Kaldi removes them from HCLG.
(icefall's prepare_lang_fst.py puts epsilon:#k loops on H instead, which removes them
before determinization.)

Importing this module loads only the standard library: kaldifst and kaldilm are
imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence, Union

from speechmoe.lang.symbols import (BOS, EOS, RESERVED_WORDS, WORD_DISAMBIG, LexiconLike,
                                    add_disambig_symbols, is_disambig, lexicon_entries,
                                    make_words_table, num_real_tokens, read_lexicon,
                                    read_tokens, read_words, with_disambig_tokens, write_words)
from speechmoe.utils import atomic_path

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- FSTs


def _count(fst) -> tuple[int, int]:
    """(states, arcs) of a kaldifst VectorFst."""
    states = fst.num_states
    return states, sum(fst.num_arcs(s) for s in range(states))


def _input_labels(fst) -> set[int]:
    import kaldifst

    labels = set()
    for state in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, state):
            labels.add(arc.ilabel)
    return labels


def _token_states(num_tokens: int):
    """The states both CTC topologies share: one per token (0: the blank, the start),
    every one final; no arcs yet."""
    import kaldifst

    if num_tokens < 2:
        raise ValueError(f"need at least the blank and one token, got num_tokens={num_tokens}")
    fst = kaldifst.StdVectorFst()
    for _ in range(num_tokens):
        fst.set_final(fst.add_state(), 0.0)
    fst.start = 0
    return fst


def make_token_topology(num_tokens: int, num_disambig: int = 0):
    """The standard CTC topology T as a kaldifst.StdVectorFst.

    State k is "the last frame was token k" (state 0: blank, or nothing yet; the start
    state). Every state is final. From any state:

      * blank (input 1) goes to state 0 and outputs nothing;
      * token k >= 1 (input k + 1) goes to state k; it outputs k unless we are already in
        state k (a repeat, which CTC collapses; a repeated token needs a blank between);
      * #d (input N + 1 + d, d < num_disambig) loops and outputs N + d, so the
        disambiguation symbols of L and G pass through composition (see the module doc).

    Args:
      num_tokens: N, the number of CTC outputs including the blank (id 0).
      num_disambig: the number of disambiguation symbols #0..#(num_disambig - 1).
    """
    import kaldifst

    fst = _token_states(num_tokens)
    for i in range(num_tokens):
        fst.add_arc(i, kaldifst.StdArc(1, 0, 0.0, 0))  # blank
        for k in range(1, num_tokens):
            fst.add_arc(i, kaldifst.StdArc(k + 1, 0 if k == i else k, 0.0, k))
        for d in range(num_disambig):
            fst.add_arc(i, kaldifst.StdArc(num_tokens + 1 + d, num_tokens + d, 0.0, i))
    return fst


def make_compact_token_topology(num_tokens: int, num_disambig: int = 0):
    """The compact CTC topology (EESEN's and WeNet's token FST) as a kaldifst.StdVectorFst.

    O(N) arcs instead of N^2: state 0 (start) is "blank, or nothing yet" and state k is
    "in a run of token k". Every state is final.

      * state 0: blank (input 1) loops; token k (input k + 1) goes to state k, output k;
        #d (input N + 1 + d) loops and outputs N + d, as in make_token_topology;
      * state k: token k loops (a repeat, output nothing); a "leave" arc (input
        N + 1 + num_disambig, output nothing) goes back to state 0.

    The leave arc has its own input label, above the disambiguation symbols, so that
    determinization keeps it as an arc (an epsilon would be removed, and with it the
    sharing: every state after a token would get its own copy of all the arcs of state
    0); compose_tlg turns it into epsilon with the #d labels. In TLG every token then
    leads, through one epsilon, to the same state whatever the token was, where the
    standard topology keeps one copy of the LM state per last token: the grammar's
    fan-out (the unigram state's arc to every word) exists once.

    It is not exactly CTC: a token can follow itself without a blank between (leave,
    then the token again), so frames "a a" can also be read as two tokens a, at the
    cost of the LM's word for the second. The standard topology forbids that.
    """
    import kaldifst

    fst = _token_states(num_tokens)
    leave = num_tokens + 1 + num_disambig
    fst.add_arc(0, kaldifst.StdArc(1, 0, 0.0, 0))  # blank
    for d in range(num_disambig):
        fst.add_arc(0, kaldifst.StdArc(num_tokens + 1 + d, num_tokens + d, 0.0, 0))
    for k in range(1, num_tokens):
        fst.add_arc(0, kaldifst.StdArc(k + 1, k, 0.0, k))
        fst.add_arc(k, kaldifst.StdArc(k + 1, 0, 0.0, k))
        fst.add_arc(k, kaldifst.StdArc(leave, 0, 0.0, 0))
    return fst


TOPOLOGIES = {"standard": make_token_topology, "compact": make_compact_token_topology}


def make_token_graph(tokens: Union[Mapping[str, int], int]):
    """T alone, ilabel-sorted: lexicon-free decoding into token ids (a sanity check).

    Decode it with ``WfstDecoder(graph, words={id: token})``: the outputs are token ids
    (any token sequence is allowed, no LM).
    """
    import kaldifst

    n = tokens if isinstance(tokens, int) else num_real_tokens(tokens)
    fst = make_token_topology(n)
    kaldifst.arcsort(fst, sort_type="ilabel")
    return fst


def make_lexicon_fst(lexicon: LexiconLike, tokens: Mapping[str, int],
                     words: Mapping[str, int], backoff_loop: bool = True):
    """L: token ids (input) -> word ids (output), no optional silence (CTC needs none).

    ``lexicon`` should come from add_disambig_symbols (its #k symbols are looked up in
    ``tokens``; missing ones get id N + k). With ``backoff_loop`` the loop state gets a
    #0:#0 self-loop so that G's back-off symbol #0 passes through L o G.

    A single loop state 0 (start, final); each pronunciation is a chain leaving and
    re-entering it, with the word on its first arc.
    """
    import kaldifst

    n = num_real_tokens(tokens)

    def token_id(t: str, word: str) -> int:
        if t in tokens:
            i = tokens[t]
        elif is_disambig(t):
            i = n + int(t[1:])
        else:
            raise ValueError(f"word {word!r}: token {t!r} is not in tokens.txt")
        if i == 0:
            raise ValueError(f"word {word!r}: the blank (id 0) cannot be in a pronunciation")
        return i

    fst = kaldifst.StdVectorFst()
    loop = fst.add_state()
    fst.start = loop
    fst.set_final(loop, 0.0)
    for w, pron in lexicon_entries(lexicon):
        if w not in words:
            raise ValueError(f"word {w!r} is not in the word table")
        if not pron:
            raise ValueError(f"word {w!r} has an empty pronunciation")
        ids = [token_id(t, w) for t in pron]
        src = loop
        for j, t in enumerate(ids):
            dst = loop if j == len(ids) - 1 else fst.add_state()
            fst.add_arc(src, kaldifst.StdArc(t, words[w] if j == 0 else 0, 0.0, dst))
            src = dst
    if backoff_loop:
        tok0 = tokens.get(WORD_DISAMBIG, n)
        if WORD_DISAMBIG not in words:
            raise ValueError(f"the word table has no {WORD_DISAMBIG} (back-off symbol)")
        kaldifst.add_self_loops(fst, isyms=[tok0], osyms=[words[WORD_DISAMBIG]])
    return fst




def make_grammar_fst(arpa_path: Union[str, Path], words_txt: Union[str, Path], order: int = -1):
    """G from an ARPA file with kaldilm.arpa2fst (Kaldi's arpa2fst).

    Back-off arcs carry #0 on their input side; <s> and </s> become epsilons. n-grams with
    words that are not in ``words_txt`` are skipped (kaldilm warns; the warnings are
    logged). ``order`` keeps n-grams up to that order (-1: all).

    kaldilm aborts the whole process on a malformed ARPA file (Kaldi's KALDI_ERR is not
    turned into a Python exception), so it runs in a child Python process; a failure
    becomes a ValueError naming the file and quoting kaldilm's error lines.
    """
    import kaldifst

    arpa_path, words_txt = Path(arpa_path), Path(words_txt)
    if not arpa_path.is_file():
        raise FileNotFoundError(f"ARPA language model not found: {arpa_path}")
    if not words_txt.is_file():
        raise FileNotFoundError(f"words file (words.txt) not found: {words_txt}")
    words = read_words(words_txt)
    missing = [w for w in (WORD_DISAMBIG, BOS, EOS) if w not in words]
    if missing:
        raise ValueError(f"{words_txt}: missing {missing} (needed to build G)")
    with tempfile.TemporaryDirectory(prefix="speechmoe-G-") as tmp:
        out = os.path.join(tmp, "G.fst")
        proc = subprocess.run(
            [sys.executable, "-c", _ARPA2FST, str(arpa_path), out, WORD_DISAMBIG,
             str(words_txt), str(int(order)), BOS, EOS],
            capture_output=True, text=True, errors="replace")
        messages = [line for line in proc.stderr.splitlines() if line.startswith("[")]
        warnings = [line for line in messages if line.startswith("[W]")]
        if warnings:
            log.warning("kaldilm: %d warnings for %s, e.g. %s", len(warnings), arpa_path,
                        "; ".join(warnings[:3]))
        if proc.returncode != 0 or not os.path.isfile(out):
            errors = [line for line in messages if line.startswith("[E]")]
            detail = "; ".join(errors) or proc.stderr.strip()[-500:]
            raise ValueError(f"{arpa_path}: kaldilm.arpa2fst failed "
                             f"(exit {proc.returncode}): {detail}")
        G = kaldifst.StdVectorFst.read(out)
    if G is None or G.start < 0:
        raise ValueError(f"{arpa_path}: the grammar FST is empty")
    return G


# Run in a child process; the FST text that arpa2fst returns is dropped there.
_ARPA2FST = ("import sys, kaldilm; a = sys.argv[1:]; "
             "kaldilm.arpa2fst(input_arpa=a[0], output_fst=a[1], disambig_symbol=a[2], "
             "read_symbol_table=a[3], max_order=int(a[4]), bos_symbol=a[5], eos_symbol=a[6])")


def _write_fst(fst, path: Union[str, Path]) -> None:
    """Write an FST atomically (temporary file in the same directory, then rename)."""
    with atomic_path(path) as tmp:
        if not fst.write(str(tmp)):
            raise OSError(f"cannot write FST to {tmp}")


def compose_lg(L, G):
    """minimize_encoded(determinize_star(L o G)), ilabel-sorted; L, G are sorted in place."""
    import kaldifst

    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    if LG.start < 0:
        raise ValueError("L o G is empty: no word of the lexicon is in the language model")
    LG = kaldifst.StdVectorFst(LG)
    if kaldifst.determinize_star(LG):
        raise RuntimeError("determinization of L o G stopped early")
    kaldifst.minimize_encoded(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")
    return LG


def compose_tlg(T, LG, num_tokens: int, minimize: bool = False):
    """det(T o LG) with the disambiguation input labels (> N) turned into epsilon.

    T is input-deterministic (its #k loops have their own input labels) and LG is
    deterministic and minimal, so T o LG is already deterministic and, in the graphs
    measured (the tests' lang; 20k words with a 3-gram, 4.2M arcs), minimal:
    determinize_star is kept as a cheap guarantee, minimize_encoded (about 20% of the
    build time there, for no change in size) runs only on request.
    """
    import kaldifst

    kaldifst.arcsort(T, sort_type="olabel")
    TLG = kaldifst.StdVectorFst(kaldifst.compose(T, LG))
    if TLG.start < 0:
        raise ValueError("T o LG is empty")
    if kaldifst.determinize_star(TLG):
        raise RuntimeError("determinization of T o LG stopped early")
    if minimize:
        kaldifst.minimize_encoded(TLG)
    removed = relabel_high_ilabels(TLG, num_tokens)
    log.debug("TLG: %d disambiguation input labels -> epsilon", removed)
    return TLG


# OpenFst property bits that depend on input labels (fst/properties.h).
_INPUT_LABEL_PROPERTIES = (0x10000 | 0x20000      # kAcceptor, kNotAcceptor
                           | 0x40000 | 0x80000    # kIDeterministic, kNonIDeterministic
                           | 0x400000 | 0x800000  # kEpsilons, kNoEpsilons
                           | 0x1000000 | 0x2000000    # kIEpsilons, kNoIEpsilons
                           | 0x10000000 | 0x20000000)  # kILabelSorted, kNotILabelSorted
ILABEL_SORTED = 0x10000000
_LABEL_PROPERTIES = 0xffff0000  # kAcceptor .. kNotOLabelSorted: every label-dependent bit


def relabel_high_ilabels(fst, max_label: int) -> int:
    """Input labels > max_label -> epsilon, in place; the FST ends up ilabel-sorted.

    Arcs are ilabel-sorted first, so at each state the labels to change are the last
    arcs: the cost is one step per state plus one per changed arc, not one per arc.
    Arc values are written through kaldifst's iterator, which does not update the FST's
    stored property bits, so the input-label ones are cleared (to "unknown") afterwards.
    """
    import kaldifst

    kaldifst.arcsort(fst, sort_type="ilabel")
    changed = 0
    for state in range(fst.num_states):
        n = fst.num_arcs(state)
        if n == 0:
            continue
        it = kaldifst.ArcIterator(fst, state)
        for pos in range(n - 1, -1, -1):
            it.seek(pos)
            arc = it.value
            if arc.ilabel <= max_label:
                break
            arc.ilabel = 0
            changed += 1
    fst.set_properties(0, _INPUT_LABEL_PROPERTIES)
    kaldifst.arcsort(fst, sort_type="ilabel")
    return changed


def max_ilabel(fst) -> int:
    """The largest input label. O(states) when the FST is flagged ilabel-sorted (the
    last arc of each state then has the largest label), O(arcs) otherwise."""
    import kaldifst

    best = 0
    if fst.properties(ILABEL_SORTED, False):
        for state in range(fst.num_states):
            n = fst.num_arcs(state)
            if n:
                it = kaldifst.ArcIterator(fst, state)
                it.seek(n - 1)
                best = max(best, it.value.ilabel)
        return best
    for state in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, state):
            if arc.ilabel > best:
                best = arc.ilabel
    return best


def built_topology(lang_dir: Union[str, Path]) -> str | None:
    """The CTC topology of lang_dir's TLG.fst as its graph.json records it (the lang
    stage writes build_tlg's info there; files from before the choice: standard); None
    without graph.json."""
    import json

    path = Path(lang_dir) / "graph.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("topology", "standard")


def build_tlg(lang_dir: Union[str, Path], arpa_path: Union[str, Path],
              out_path: Union[str, Path, None] = None, order: int = 3,
              minimize_tlg: bool = False, topology: str = "compact") -> dict:
    """Build TLG.fst from lang_dir/{tokens,lexicon}.txt and an ARPA LM.

    Writes lang_dir/words.txt, lang_dir/L_disambig.fst, lang_dir/G.fst and ``out_path``
    (default lang_dir/TLG.fst), each atomically. Returns sizes and timings.
    ``topology``: the CTC topology T, "compact" (make_compact_token_topology: about half
    the arcs and a 4x faster search on the embedded recipe's graph, at the same dev CER)
    or "standard" (make_token_topology: exact CTC).
    """
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {sorted(TOPOLOGIES)}, got {topology!r}")
    lang_dir = Path(lang_dir)
    out_path = Path(out_path) if out_path is not None else lang_dir / "TLG.fst"
    t0 = time.perf_counter()
    tokens_txt, lexicon_txt = lang_dir / "tokens.txt", lang_dir / "lexicon.txt"
    tokens = read_tokens(tokens_txt)
    lexicon = read_lexicon(lexicon_txt)
    if not Path(arpa_path).is_file():
        raise FileNotFoundError(f"ARPA language model not found: {arpa_path}")

    unknown = sorted({t for _, p in lexicon for t in p if t not in tokens or is_disambig(t)})
    if unknown:
        raise ValueError(f"{lexicon_txt}: tokens not in {tokens_txt}: {unknown[:20]}"
                         + (" ..." if len(unknown) > 20 else ""))
    blank_words = [w for w, p in lexicon if any(tokens[t] == 0 for t in p)]
    if blank_words:
        raise ValueError(f"{lexicon_txt}: the blank (id 0) is in the pronunciation of "
                         f"{blank_words[:10]}")

    n = num_real_tokens(tokens)
    words = make_words_table(lexicon)
    lex_disambig, max_disambig = add_disambig_symbols(lexicon)
    tokens_d = with_disambig_tokens(tokens, max_disambig)
    num_disambig = max_disambig + 1  # #0 .. #max
    words_txt = lang_dir / "words.txt"
    write_words(words, words_txt)
    log.info("lang %s: %d tokens, %d lexicon entries, %d words, disambiguation #0..#%d",
             lang_dir, n, len(lexicon), len(words) - 4, max_disambig)

    L = make_lexicon_fst(lex_disambig, tokens_d, words)
    _write_fst(L, lang_dir / "L_disambig.fst")
    G = make_grammar_fst(arpa_path, words_txt, order)
    _write_fst(G, lang_dir / "G.fst")
    sizes = {"L": _count(L), "G": _count(G)}
    in_lm = _input_labels(G)
    absent = sorted(w for w, i in words.items() if w not in RESERVED_WORDS and i not in in_lm)
    if absent:
        log.warning("%d of %d lexicon words are not in the LM %s and cannot be decoded "
                    "(e.g. %s)", len(absent), len(words) - 4, arpa_path, absent[:5])
    log.info("L_disambig: %d states, %d arcs; G (order %d): %d states, %d arcs",
             *sizes["L"], order, *sizes["G"])

    t1 = time.perf_counter()
    LG = compose_lg(L, G)
    sizes["LG"] = _count(LG)
    log.info("LG: %d states, %d arcs (%.2f s)", *sizes["LG"], time.perf_counter() - t1)

    t1 = time.perf_counter()
    T = TOPOLOGIES[topology](n, num_disambig)
    sizes["T"] = _count(T)
    TLG = compose_tlg(T, LG, n, minimize=minimize_tlg)
    sizes["TLG"] = _count(TLG)
    _write_fst(TLG, out_path)
    seconds = time.perf_counter() - t0
    log.info("TLG: %d states, %d arcs (%.2f s); total %.2f s -> %s",
             *sizes["TLG"], time.perf_counter() - t1, seconds, out_path)
    return {"sizes": sizes, "seconds": seconds, "num_tokens": n,
            "max_disambig": max_disambig, "tlg": str(out_path), "words": str(words_txt),
            "topology": topology}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Build TLG.fst (CTC topology o lexicon o n-gram LM) with kaldifst.",
        epilog="Expects LANG_DIR/tokens.txt and LANG_DIR/lexicon.txt; writes "
               "LANG_DIR/words.txt, L_disambig.fst, G.fst and TLG.fst (or --out).")
    parser.add_argument("--lang-dir", required=True, type=Path)
    parser.add_argument("--arpa", required=True, type=Path, help="word n-gram LM (ARPA)")
    parser.add_argument("--order", type=int, default=3,
                        help="use n-grams up to this order (-1: all); default 3")
    parser.add_argument("--out", type=Path, default=None, help="default LANG_DIR/TLG.fst")
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES), default="compact",
                        help="CTC topology of T (default compact; standard: exact CTC)")
    parser.add_argument("--minimize-tlg", action="store_true",
                        help="also minimize TLG (slower; T o LG is normally minimal already)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_tlg(args.lang_dir, args.arpa, args.out, args.order, args.minimize_tlg,
              topology=args.topology)


if __name__ == "__main__":
    main()
