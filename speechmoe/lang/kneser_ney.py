"""Interpolated modified Kneser-Ney estimation of word n-gram models.

``estimate_kneser_ney`` follows Chen & Goodman (1998), "An empirical study of smoothing
techniques for language modeling", section 3 / eq. 17 and 26:

* the highest order uses raw counts; every lower order uses continuation counts
  ``N1+(. w_1..w_n)`` (the number of distinct words seen to the left), except n-grams that
  start with ``<s>``, which can have no left context and keep their raw counts;
* every order has three discounts ``D1, D2, D3+`` estimated from its counts-of-counts
  ``n1..n4``: ``Y = n1 / (n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``,
  ``D3+ = 3 - 4Y n4/n3``.  A discount the formula cannot give (a zero count-of-count, or a
  value outside ``(0, k)``, as happens on tiny corpora) is replaced by the fallback
  ``(0.5, 1.0, 1.5)`` (KenLM's ``--discount_fallback`` default) and a warning is logged;
* ``p(w | h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w | h')`` with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / a(h.)``; the unigram level is
  interpolated with a base distribution ``p0`` over the vocabulary without ``<s>``: uniform
  by default (the words, ``</s>`` and, if asked, ``<unk>``, which gets exactly that floor
  mass), or ``p0(w) ~ 1 + base_counts[w]`` (the open vocabulary of a lang dir: every
  character is a word, ``base_counts`` its frequency inside the text's words, so an unseen
  word's characters get the mass that their frequency deserves).

Words given in ``vocabulary`` but absent from the text are in the model with the unigram
floor mass ``gamma(.) p0(w)`` alone.

Count cutoffs (off by default): an n-gram of order n >= 2 seen (raw count) fewer than
``cutoffs[n-1]`` times is dropped, SRILM ``-gtNmin`` style (0 and 1 keep everything).  Its
discounted mass joins the backoff mass of its history, so the kept probabilities are
unchanged interpolated-KN values and the model stays normalised (what KenLM's ``--prune``
does).  An n-gram whose prefix or suffix was dropped is dropped too, so the ARPA file stays
well formed.  Relative-entropy pruning is ``speechmoe.lang.prune.entropy_prune``.

Storage is numpy arrays, one level per order: an n-gram is (index of its (n-1)-gram prefix,
last word), so counting is a sort (``np.unique``) of int64 keys per order.  The estimated
model (``NgramLM``) is written by ``speechmoe.lang.arpa.write_arpa``.

This module imports only the standard library at module level; numpy is imported by the
functions that need it.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Iterable, Mapping, Sequence

from speechmoe.lang.arpa import write_arpa
from speechmoe.lang.prune import entropy_prune

log = logging.getLogger(__name__)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_BOS, _EOS, _UNK = 0, 1, 2  # fixed word ids
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def kneser_ney_discounts(counts_of_counts: Sequence[int]) -> tuple[tuple[float, float, float],
                                                                   bool]:
    """Modified-KN discounts ``(D1, D2, D3+)`` from ``(n1, n2, n3, n4)``.

    Returns the discounts and whether any of them is the fallback: a discount is replaced by
    ``FALLBACK_DISCOUNTS[k-1]`` when the formula is undefined (a zero denominator) or gives a
    value outside ``(0, k)`` (zero would leave no mass for the lower orders, ``k`` or more
    would give n-grams seen k times no mass of their own).
    """
    n1, n2, n3, n4 = (int(c) for c in counts_of_counts)
    est = [math.nan, math.nan, math.nan]
    if n1 > 0 and n2 > 0:
        y = n1 / (n1 + 2.0 * n2)
        est[0] = 1.0 - 2.0 * y * n2 / n1
        est[1] = 2.0 - 3.0 * y * n3 / n2
        if n3 > 0:
            est[2] = 3.0 - 4.0 * y * n4 / n3
    out, fell_back = [], False
    for k, d in enumerate(est, 1):
        if 0.0 < d < k:  # False for NaN
            out.append(d)
        else:
            out.append(FALLBACK_DISCOUNTS[k - 1])
            fell_back = True
    return (out[0], out[1], out[2]), fell_back


class _Vocab(dict):
    """word -> id, adding unseen words with the next id."""

    def __missing__(self, word):
        idx = self[word] = len(self)
        return idx


class _Level:
    """The n-grams of one order, index u: ``prefix[u]`` (index into order n-1; for n = 2 a
    word id), ``word[u]`` (last word id), ``suffix[u]`` (index of w_2..w_n in order n-1),
    raw ``count``, KN ``adj`` count, interpolated ``prob``, ``kept`` after pruning, and for
    orders below the highest the backoff weight ``bow`` (1 where the entry has no kept
    continuation) and ``has_children``."""

    __slots__ = ("n", "size", "prefix", "word", "suffix", "from_bos", "count", "adj", "prob",
                 "kept", "bow", "has_children", "discounts")

    def __init__(self, n, size):
        self.n, self.size = n, size
        self.prefix = self.word = self.suffix = self.from_bos = None
        self.count = self.adj = self.prob = self.kept = self.bow = self.has_children = None
        self.discounts = None


def _check_args(order, cutoffs, prune_threshold):
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    order = int(order)
    if cutoffs is None:
        cutoffs = [0] * order
    else:
        cutoffs = [int(c) for c in cutoffs]
        if len(cutoffs) != order:
            raise ValueError(f"cutoffs needs one value per order ({order}), got {cutoffs}")
        if any(c < 0 for c in cutoffs):
            raise ValueError(f"cutoffs must be >= 0, got {cutoffs}")
        if cutoffs[0] > 1:
            raise ValueError("unigram cutoffs are not supported (they would shrink the "
                             "vocabulary): map rare words to <unk> in the text instead")
    prune_threshold = float(prune_threshold)
    if not prune_threshold >= 0.0:
        raise ValueError(f"prune_threshold must be >= 0, got {prune_threshold}")
    return order, cutoffs, prune_threshold


def estimate_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3,
                        cutoffs: Sequence[int] | None = None, prune_threshold: float = 0.0,
                        unk: bool = True, vocabulary: Iterable[str] = (),
                        base_counts: Mapping[str, float] | None = None) -> "NgramLM":
    """Estimate an interpolated modified Kneser-Ney n-gram model (see the module docstring).

    sentences: word sequences without sentence boundaries (a leading ``<s>`` / trailing
      ``</s>`` is stripped; one inside a sentence is an error).  An empty sequence is the
      sentence ``<s> </s>``.
    order: the highest n-gram order (>= 1).
    cutoffs: per order, the minimum raw count an n-gram must have to be kept (SRILM
      ``-gtNmin``); ``cutoffs[0]`` must be 0 or 1.  ``None``: keep everything.
    prune_threshold: relative-entropy (Stolcke) pruning threshold on the relative perplexity
      change; 0 disables it.
    unk: put ``<unk>`` in the vocabulary (its probability is the uniform floor mass, unless
      the text itself contains ``<unk>``).
    vocabulary: words to have in the model even if the text lacks them (floor mass only).
    base_counts: the unigram level's base distribution ``p0(w) ~ 1 + base_counts[w]``
      (missing words: 0); ``None``: uniform.
    """
    import numpy as np

    order, cutoffs, prune_threshold = _check_args(order, cutoffs, prune_threshold)
    t0 = time.perf_counter()

    vocab = _Vocab({BOS: _BOS, EOS: _EOS})
    if unk:
        vocab[UNK] = _UNK
    to_id = vocab.__getitem__
    ids: list[int] = []
    lengths: list[int] = []
    for sent in sentences:
        if isinstance(sent, str):
            raise TypeError("a sentence must be a sequence of words, not a string "
                            "(split it first)")
        words = list(sent)
        if words and words[0] == BOS:
            del words[0]
        if words and words[-1] == EOS:
            words.pop()
        ids.append(_BOS)
        ids.extend(map(to_id, words))
        ids.append(_EOS)
        lengths.append(len(words) + 2)
    if not lengths:
        raise ValueError("no sentences to estimate a language model from")
    for w in vocabulary:
        if w in (BOS, EOS):
            raise ValueError(f"{w} cannot be given as a vocabulary word")
        to_id(w)
    stream = np.array(ids, dtype=np.int64)
    del ids
    lengths_a = np.array(lengths, dtype=np.int64)
    n_sent = len(lengths)
    del lengths
    if (np.count_nonzero(stream == _BOS) != n_sent
            or np.count_nonzero(stream == _EOS) != n_sent):
        raise ValueError(f"{BOS} or {EOS} inside a sentence")
    words_list = list(vocab)
    for w in words_list:
        if len(w.split()) != 1 or w.split()[0] != w:
            raise ValueError(f"word {w!r} is empty or contains whitespace")
    V = len(words_list)
    L = len(stream)
    starts = np.cumsum(lengths_a) - lengths_a
    offs = np.arange(L, dtype=np.int64) - np.repeat(starts, lengths_a)  # position in sentence
    del starts, lengths_a
    idt = np.int32 if L < 2**31 - 1 else np.int64  # ids, indices and counts

    # ---- counting: level n is the sorted unique keys (prefix index) * V + word -------------
    lv1 = _Level(1, V)
    lv1.word = np.arange(V, dtype=idt)
    lv1.from_bos = lv1.word == _BOS
    lv1.count = np.bincount(stream, minlength=V).astype(idt)
    levels = [lv1]
    pos_ids = [stream]  # pos_ids[n-1][i]: index of the n-gram ending at position i (or -1)
    for n in range(2, order + 1):
        valid = np.flatnonzero(offs >= n - 1)
        prev_ids = pos_ids[-1]
        keys = prev_ids[valid - 1].astype(np.int64) * V + stream[valid]
        uniq, first, inv, counts = np.unique(keys, return_index=True, return_inverse=True,
                                             return_counts=True)
        del keys
        lv = _Level(n, len(uniq))
        lv.prefix = (uniq // V).astype(idt)
        lv.word = (uniq % V).astype(idt)
        lv.suffix = prev_ids[valid[first]].astype(idt)
        lv.from_bos = levels[-1].from_bos[lv.prefix]  # does the n-gram start with <s>?
        lv.count = counts.astype(idt)
        ids_n = np.full(L, -1, dtype=idt)
        ids_n[valid] = inv.reshape(-1)
        pos_ids.append(ids_n)
        levels.append(lv)
        del uniq, first, inv, counts, valid
    t_count = time.perf_counter()

    # ---- Kneser-Ney adjusted counts ------------------------------------------------------------
    for n, lv in enumerate(levels, 1):
        if n == order:
            adj = lv.count.copy()
        else:
            adj = np.bincount(levels[n].suffix, minlength=lv.size).astype(idt)
            adj[lv.from_bos] = lv.count[lv.from_bos]
        if n == 1:
            adj[_BOS] = 0  # <s> is never predicted
        lv.adj = adj
    for lv in levels:
        lv.from_bos = None

    # ---- discounts and interpolated probabilities, lowest order first ----------------------
    for n, lv in enumerate(levels, 1):
        a = lv.adj
        coc = np.bincount(np.minimum(a, 5), minlength=6)[1:5]
        lv.discounts, fell_back = kneser_ney_discounts(coc)
        if fell_back and lv.size:
            log.warning("order %d: counts-of-counts n1..n4 = %s give no valid modified-KN "
                        "discount for every count; using %s", n, coc.tolist(),
                        tuple(round(d, 4) for d in lv.discounts))
        dtab = np.array((0.0,) + lv.discounts)
        d = dtab[np.minimum(a, 3)]
        if n == 1:
            total = float(a.sum())
            gamma0 = float(d.sum()) / total
            lv.prob = (a - d) / total + gamma0 * _base_distribution(words_list, base_counts)
            lv.kept = np.ones(V, dtype=bool)
            continue
        low = levels[n - 2]
        total = np.bincount(lv.prefix, weights=a, minlength=low.size)
        own = (a - d) / total[lv.prefix]
        kept = lv.count >= cutoffs[n - 1]
        kept &= low.kept[lv.prefix]
        kept &= low.kept[lv.suffix]
        lv.kept = kept
        backoff_mass = np.bincount(lv.prefix, weights=d, minlength=low.size)
        if not kept.all():
            # a dropped n-gram's discounted count goes to its history's backoff mass
            backoff_mass += np.bincount(lv.prefix[~kept], weights=(a - d)[~kept],
                                        minlength=low.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(total > 0, backoff_mass / total, 1.0)
        lv.prob = own + gamma[lv.prefix] * low.prob[lv.suffix]
        low.bow = gamma

    # ---- relative-entropy pruning, highest order first ----------------------------------------
    if prune_threshold > 0.0 and order >= 2:
        entropy_prune(levels, prune_threshold)

    # ---- final backoff weights: exactly 1 where an entry has no kept continuation ---------
    for n in range(1, order):
        low, lv = levels[n - 1], levels[n]
        low.has_children = np.bincount(lv.prefix[lv.kept], minlength=low.size) > 0
        low.bow = np.where(low.has_children & low.kept, low.bow, 1.0)

    lm = NgramLM(words_list, levels)
    lm.training_perplexity = _training_perplexity(levels, stream, offs, pos_ids, n_sent)
    t_end = time.perf_counter()
    log.info("estimated a %d-gram model on %d sentences, %d tokens, %d words in %.2f s "
             "(counting %.2f s)", order, n_sent, L - 2 * n_sent, V, t_end - t0, t_count - t0)
    return lm


def _base_distribution(words: list[str], base_counts: Mapping[str, float] | None):
    """p0 over the vocabulary (0 for <s>): uniform, or proportional to 1 + base_counts[w]."""
    import numpy as np

    if base_counts is None:
        p0 = np.ones(len(words))
    else:
        p0 = 1.0 + np.array([float(base_counts.get(w, 0.0)) for w in words])
        if not (np.isfinite(p0).all() and (p0 >= 1.0).all()):
            raise ValueError("base_counts must be finite and >= 0")
    p0[_BOS] = 0.0
    return p0 / p0.sum()


def _training_perplexity(levels, stream, offs, pos_ids, n_sent):
    """Perplexity of the final (pruned) backoff model on its own training text."""
    import numpy as np

    order = len(levels)
    pos = np.flatnonzero(offs >= 1)  # every predicted token, </s> included
    total = np.zeros(len(pos))
    done = np.zeros(len(pos), dtype=bool)
    for m in range(order, 0, -1):
        elig = ~done & (offs[pos] >= m - 1)
        if m == 1:
            total[elig] += np.log10(levels[0].prob[stream[pos[elig]]])
            break
        ids = pos_ids[m - 1][pos[elig]]
        hit = levels[m - 1].kept[ids]
        idx_hit = np.flatnonzero(elig)[hit]
        total[idx_hit] += np.log10(levels[m - 1].prob[ids[hit]])
        idx_miss = np.flatnonzero(elig)[~hit]
        hist = pos_ids[m - 2][pos[idx_miss] - 1]
        total[idx_miss] += np.log10(levels[m - 2].bow[hist])
        done[idx_hit] = True
    return float(10.0 ** (-total.sum() / len(pos)))


class NgramLM:
    """An estimated backoff n-gram model (interpolated KN probabilities, ARPA backoff weights).

    ``vocab``: the words by id (``<s>``, ``</s>``, ``<unk>`` if asked, then the text's words);
    ``order``; ``discounts``: per order ``(D1, D2, D3+)``; ``training_perplexity``: the final
    model's perplexity on its training text (``</s>`` counted, ``<s>`` not).
    """

    def __init__(self, vocab: list[str], levels: list[_Level]):
        self.vocab = vocab
        self.levels = levels  # per order, the estimator's arrays (see _Level)
        self.order = len(levels)
        self.discounts = [lv.discounts for lv in levels]
        self.training_perplexity = math.nan

    def num_ngrams(self) -> list[int]:
        """The number of n-grams of each order in the model, ``order`` values (the ARPA file
        leaves out empty highest orders)."""
        return [int(lv.kept.sum()) for lv in self.levels]

    def write_arpa(self, path) -> None:
        """Write the model in ARPA format: ``speechmoe.lang.arpa.write_arpa``."""
        write_arpa(self, path)
