"""A TLG for decoders that read a word only where a new token starts (sherpa-onnx).

sherpa-onnx's offline CTC FST decoder (offline-ctc-fst-decoder.cc; its online one reads
every output label) walks the best path and takes an arc's output label only when the arc
starts a new non-blank token. build_tlg's TLG determinizes L o G, which delays a
homophone's word label to its word-end disambiguation arc; that arc is epsilon in TLG, and
sherpa-onnx drops the word (measured: 5 of 40 utterances of the embedded recipe's tiny
test_read lost words). build_word_start_tlg keeps every word label on its word's first
token. Like graph.py, this module imports kaldifst only inside its
functions.
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


def word_starts_violations(fst, num_tokens: int) -> int:
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


def build_word_start_tlg(lang_dir: Union[str, Path], out_path: Union[str, Path],
                         topology: str = "compact") -> dict:
    """A TLG whose word labels sit on each word's first token, for sherpa-onnx.

    sherpa-onnx's offline CTC FST decoder reads the best path's output label only on an
    arc that starts a new non-blank token (see the module doc). Here L o G is
    determinized and minimized with (token, word) pairs as labels (OpenFst's encoded
    determinization), so no word label moves, and T o LG is not determinized: the graph
    is not input-deterministic (homophones start on the same token). On the embedded
    recipe's LM it has 4% more arcs than TLG.fst. The toolkit's own decoder finds the
    same words in both (up to beam pruning). Reads lang_dir/{tokens.txt,
    L_disambig.fst, G.fst} (build_tlg's) and writes out_path atomically.
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
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.StdVectorFst(kaldifst.compose(L, G))
    if LG.start < 0:
        raise ValueError(f"{lang_dir}: L o G is empty")
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
    bad = word_starts_violations(TLG, n)
    if bad:
        raise RuntimeError(f"{bad} word labels of the word-start TLG are off a token start")
    _write_fst(TLG, out_path)
    sizes = {"LG": _count(LG), "TLG": _count(TLG)}
    log.info("word-start TLG: %d states, %d arcs (%.1f s) -> %s", *sizes["TLG"],
             time.perf_counter() - t0, out_path)
    return {"sizes": sizes, "seconds": time.perf_counter() - t0, "topology": topology,
            "tlg": str(out_path)}
