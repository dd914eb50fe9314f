"""A TLG for decoders that read a word only where a new token starts (sherpa-onnx).

sherpa-onnx's offline CTC FST decoder (offline-ctc-fst-decoder.cc; its online one reads
every output label) walks the best path and takes an arc's output label only when the arc
starts a new non-blank token. build_tlg's TLG determinizes L o G, which delays the word
label of a homophone, or of a word that is the start of a longer one, to its word-end
disambiguation arc; that arc is epsilon in TLG, and sherpa-onnx drops the word (measured:
5 of 40 utterances of the embedded recipe's tiny test_read lost words).
build_token_start_tlg puts every word label on the arc where the word's last token starts
(the first of them, when a pronunciation ends in a repeated token).
Like graph.py, this module imports kaldifst only inside its functions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence, Union

from speechmoe.lang.graph import (TOPOLOGIES, _LABEL_PROPERTIES, _count, _input_labels,
                                  _write_fst, relabel_high_ilabels)
from speechmoe.lang.symbols import num_real_tokens, read_tokens

log = logging.getLogger(__name__)


def _encode_pairs(fst) -> list[tuple[int, int]]:
    """Each arc's (ilabel, olabel) -> one label on both sides, in place (OpenFst's
    Encode for labels); returns the table for _decode_pairs. Label 0 stays (0, 0)."""
    import kaldifst

    table, ids = [(0, 0)], {(0, 0): 0}
    for state in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, state):
            key = (arc.ilabel, arc.olabel)
            code = ids.get(key)
            if code is None:
                code = ids[key] = len(table)
                table.append(key)
            arc.ilabel = arc.olabel = code
    fst.set_properties(0, _LABEL_PROPERTIES)
    return table


def _decode_pairs(fst, table: Sequence[tuple[int, int]]) -> None:
    import kaldifst

    for state in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, state):
            arc.ilabel, arc.olabel = table[arc.ilabel]
    fst.set_properties(0, _LABEL_PROPERTIES)


def _mark_last_tokens(L, num_tokens: int, shift: int) -> int:
    """Add ``shift`` to the input label of every pronunciation's last real token in L, or,
    when the pronunciation ends in a run of one token repeated ("x d d"), of the run's
    first. (make_lexicon_fst's chains leave the loop state with the word; each later
    state has one arc, and they end back at the loop state.) Returns the number of
    chains.

    Why the run's first: the compact CTC topology can read frames of one token with no
    blank between as that token twice, and sherpa-onnx skips the arc of a token that
    repeats the one before, its word with it."""
    import kaldifst

    loop, chains = L.start, 0
    for arc in kaldifst.ArcIterator(L, loop):
        if not (arc.olabel and 1 <= arc.ilabel <= num_tokens):
            continue
        last, state = arc, arc.nextstate
        while state != loop:
            if L.num_arcs(state) != 1:
                raise ValueError(f"L_disambig.fst: state {state} of a pronunciation has "
                                 f"{L.num_arcs(state)} arcs, not 1")
            nxt = next(iter(kaldifst.ArcIterator(L, state)))
            if 1 <= nxt.ilabel <= num_tokens and nxt.ilabel != last.ilabel:
                last = nxt
            state = nxt.nextstate
        last.ilabel += shift
        chains += 1
    L.set_properties(0, _LABEL_PROPERTIES)
    return chains


def _move_words_to_marks(LG, num_tokens: int, shift: int) -> int:
    """In L o G (composed, not determinized) each word label sits on its pronunciation's
    first arc, and the chain of that pronunciation runs on through states of one arc each
    to its marked last token (_mark_last_tokens). Move every label to that mark, then
    unmark. Returns the number of labels moved."""
    import kaldifst

    moved = 0
    for state in range(LG.num_states):
        for arc in kaldifst.ArcIterator(LG, state):
            if not (arc.olabel and 1 <= arc.ilabel <= num_tokens):
                continue  # no word, or a one-token word whose first token is its last
            nxt = arc
            while not nxt.ilabel > shift:
                if LG.num_arcs(nxt.nextstate) != 1:
                    raise RuntimeError(f"L o G: state {nxt.nextstate} inside a word has "
                                       f"{LG.num_arcs(nxt.nextstate)} arcs, not 1")
                nxt = next(iter(kaldifst.ArcIterator(LG, nxt.nextstate)))
            nxt.olabel, arc.olabel = arc.olabel, 0
            moved += 1
    for state in range(LG.num_states):
        for arc in kaldifst.ArcIterator(LG, state):
            if arc.ilabel > shift:
                arc.ilabel -= shift
    LG.set_properties(0, _LABEL_PROPERTIES)
    return moved


def token_start_violations(fst, num_tokens: int) -> int:
    """Arcs whose word label is not on a real token (input 2..N: not epsilon, not the
    blank). A decoder that reads a word only where a new token starts (sherpa-onnx's
    offline CTC FST decoder) loses the word of every such arc."""
    import kaldifst

    bad = 0
    for state in range(fst.num_states):
        for arc in kaldifst.ArcIterator(fst, state):
            if arc.olabel and not 2 <= arc.ilabel <= num_tokens:
                bad += 1
    return bad


def build_token_start_tlg(lang_dir: Union[str, Path], out_path: Union[str, Path],
                          topology: str = "compact") -> dict:
    """A TLG whose word labels sit on each word's last token, for sherpa-onnx (on the first
    of them when a pronunciation ends in a repeated token: _mark_last_tokens).

    sherpa-onnx's offline CTC FST decoder reads the best path's output label only on an
    arc that starts a new non-blank token (see the module doc). Here the word label of
    every pronunciation is moved from its first token (where L puts it, so that
    composing with G keeps only the words G allows) to its last, inside L o G; then L o G
    is determinized and minimized with (token, word) pairs as labels (OpenFst's encoded
    determinization), so no label moves again. Words sharing their first tokens share
    the arcs of those tokens, as in TLG.fst; only homophones, and a word that is the start
    of a longer one, split where the last word ends. T o LG is not determinized.

    Measured on the embedded recipe's LM (egs/synth_mandarin/results/sherpa_onnx/graphs/):
    5.02M arcs against TLG.fst's 4.98M, and sherpa-onnx's dev CER the same as with each
    word on its first token (the previous placement: 5.18M arcs) in 7x less time. Reads
    lang_dir/{tokens.txt, L_disambig.fst, G.fst} (build_tlg's) and writes out_path
    atomically.
    """
    import kaldifst

    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {sorted(TOPOLOGIES)}, got {topology!r}")
    lang_dir, t0 = Path(lang_dir), time.perf_counter()
    for name in ("tokens.txt", "L_disambig.fst", "G.fst"):
        if not (lang_dir / name).is_file():
            raise FileNotFoundError(f"{lang_dir / name} not found (build TLG first)")
    n = num_real_tokens(read_tokens(lang_dir / "tokens.txt"))
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L_disambig.fst"))
    G = kaldifst.StdVectorFst.read(str(lang_dir / "G.fst"))
    num_disambig = max(_input_labels(L)) - n + 1  # #0..#max follow the N real tokens
    shift = n + num_disambig + 1  # a marked token: above every label of L
    _mark_last_tokens(L, n, shift)
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.StdVectorFst(kaldifst.compose(L, G))
    if LG.start < 0:
        raise ValueError(f"{lang_dir}: L o G is empty")
    _move_words_to_marks(LG, n, shift)
    table = _encode_pairs(LG)
    if kaldifst.determinize_star(LG):
        raise RuntimeError("determinization of the encoded L o G stopped early")
    kaldifst.minimize_encoded(LG)
    _decode_pairs(LG, table)
    kaldifst.arcsort(LG, sort_type="ilabel")
    T = TOPOLOGIES[topology](n, num_disambig)
    kaldifst.arcsort(T, sort_type="olabel")
    TLG = kaldifst.StdVectorFst(kaldifst.compose(T, LG))
    kaldifst.connect(TLG)
    relabel_high_ilabels(TLG, n)
    bad = token_start_violations(TLG, n)
    if bad:
        raise RuntimeError(f"{bad} word labels of the token-start TLG are off a token start")
    _write_fst(TLG, out_path)
    sizes = {"LG": _count(LG), "TLG": _count(TLG)}
    log.info("token-start TLG: %d states, %d arcs (%.1f s) -> %s", *sizes["TLG"],
             time.perf_counter() - t0, out_path)
    return {"sizes": sizes, "seconds": time.perf_counter() - t0, "topology": topology,
            "tlg": str(out_path)}
