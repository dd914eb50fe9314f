"""Word n-gram language models: interpolated modified Kneser-Ney estimation, pruning, ARPA I/O.

Estimation (``estimate_kneser_ney``) follows Chen & Goodman (1998), "An empirical study of
smoothing techniques for language modeling", section 3 / eq. 17 and 26:

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
  interpolated with the uniform distribution over the vocabulary without ``<s>`` (the words,
  ``</s>`` and, if asked, ``<unk>``, which gets exactly that floor mass).

Pruning (both off by default):

* count cutoffs: an n-gram of order n >= 2 seen (raw count) fewer than ``cutoffs[n-1]`` times
  is dropped, SRILM ``-gtNmin`` style (0 and 1 keep everything).  Its discounted mass joins the
  backoff mass of its history, so the kept probabilities are unchanged interpolated-KN values
  and the model stays normalised (this is what KenLM's ``--prune`` does).  An n-gram whose
  prefix or suffix was dropped is dropped too, so the ARPA file stays well formed.
* relative-entropy pruning (Stolcke 1998), order by order from the highest: an n-gram ``h w``
  is removed when removing it alone (with the backoff weight of ``h`` recomputed) raises the
  model's perplexity by a relative amount below the threshold, i.e. when
  ``exp(D) - 1 < threshold`` with ``D = -P(h) {p(w|h) [ln p'(w|h) - ln p(w|h)]
  + [ln a'(h) - ln a(h)] sum_{v unseen after h} p(v|h)}`` (SRILM's ``-prune`` criterion;
  for small D, ``exp(D) - 1 ~ D``, the entropy change in nats).  ``P(h)`` is the model's own
  probability of the history (``<s>`` has probability 1).  N-grams that are the prefix or the
  suffix of a kept higher-order n-gram are never removed; unigrams are never removed.
  Backoff weights are recomputed afterwards.

Storage is numpy arrays, one level per order: an n-gram is (index of its (n-1)-gram prefix,
last word), so counting is a sort (``np.unique``) of int64 keys per order.

Reading: ``load_arpa(path)`` gives an ``ArpaLM`` with the standard backoff semantics, used to
score text (``logprob``, ``sentence_logprob``, ``perplexity``).

CLI::

    python -m speechmoe.lang.ngram --order 3 [--cutoffs 0,1,2] [--prune 1e-8] [--no-unk] \\
        TEXT_FILE OUT.arpa

This module imports only the standard library at module level; numpy is imported by the
functions that need it.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import math
import os
import sys
import time
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_BOS, _EOS, _UNK = 0, 1, 2  # fixed word ids
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
_LOG10_ZERO = -99.0  # what ARPA files write for log10(0) (the <s> unigram)


# ---------------------------------------------------------------------------------------------
# estimation
# ---------------------------------------------------------------------------------------------

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
                        unk: bool = True) -> "NgramLM":
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
            lv.prob = (a - d) / total + gamma0 / (V - 1)
            lv.prob[_BOS] = 0.0
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
        _entropy_prune(levels, prune_threshold)

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


def _entropy_prune(levels, threshold):
    """Stolcke (1998) pruning in place; see the module docstring."""
    import numpy as np

    log_thr = math.log1p(threshold)
    order = len(levels)
    # P(h): the model's probability of each entry used as a history (<s> -> 1)
    hist_prob = [None] * order
    hp = levels[0].prob.copy()
    hp[_BOS] = 1.0
    hist_prob[0] = hp
    for n in range(2, order):
        lv = levels[n - 1]
        hist_prob[n - 1] = hist_prob[n - 2][lv.prefix] * lv.prob

    for n in range(order, 1, -1):
        lv, low = levels[n - 1], levels[n - 2]
        protected = np.zeros(lv.size, dtype=bool)
        if n < order:
            up = levels[n]
            protected[up.prefix[up.kept]] = True
            protected[up.suffix[up.kept]] = True
        kept = lv.kept
        lower_p = low.prob[lv.suffix]  # p(w | h'), explicit: suffixes of kept entries are kept
        den = 1.0 - np.bincount(lv.prefix[kept], weights=lower_p[kept], minlength=low.size)
        den = np.maximum(den, 0.0)
        alpha = low.bow  # = gamma'(h) so far: no entry of this order has been removed yet
        cand = np.flatnonzero(kept & ~protected)
        if len(cand) == 0:
            continue
        h = lv.prefix[cand]
        p = lv.prob[cand]
        q = lower_p[cand]
        num_h = alpha[h] * den[h]  # sum of p(v | h) over the words v that back off from h
        alpha_new = (num_h + p) / (den[h] + q)
        delta = -hist_prob[n - 2][h] * (p * (np.log(alpha_new * q) - np.log(p))
                                        + num_h * (np.log(alpha_new) - np.log(alpha[h])))
        removed = cand[delta < log_thr]
        if len(removed) == 0:
            continue
        kept[removed] = False
        rp = np.bincount(lv.prefix[removed], weights=lv.prob[removed], minlength=low.size)
        rq = np.bincount(lv.prefix[removed], weights=lower_p[removed], minlength=low.size)
        touched = rq > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            new_bow = (alpha * den + rp) / (den + rq)
        low.bow = np.where(touched, new_bow, alpha)
        log.info("entropy pruning removed %d of %d %d-grams", len(removed),
                 int(np.count_nonzero(kept)) + len(removed), n)


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
        self._levels = levels
        self.order = len(levels)
        self.discounts = [lv.discounts for lv in levels]
        self.training_perplexity = math.nan

    def num_ngrams(self) -> list[int]:
        """The number of n-grams of each order in the model, ``order`` values (the ARPA file
        leaves out empty highest orders)."""
        return [int(lv.kept.sum()) for lv in self._levels]

    def write_arpa(self, path) -> None:
        """Write the model in ARPA format (log10), atomically (temporary file + rename).

        Highest orders without any n-gram are not written (the file's order is then lower
        than ``self.order``; the model is the same)."""
        _atomic_write(path, self._write_arpa)

    def _write_arpa(self, f, chunk: int = 1 << 16) -> None:
        import numpy as np

        words = self.vocab
        counts = self.num_ngrams()
        # empty highest orders (a corpus of short sentences, or pruning) are left out:
        # Kaldi's ARPA reader warns about them and they change nothing
        top = max(n for n, c in enumerate(counts, 1) if c > 0)
        f.write("\\data\\\n")
        for n, c in enumerate(counts[:top], 1):
            f.write(f"ngram {n}={c}\n")
        prev_names = words  # names of the previous order's entries, by index
        for n, lv in enumerate(self._levels[:top], 1):
            f.write(f"\n\\{n}-grams:\n")
            with_bow = n < top
            # the names of this order's entries are kept only while they are needed as the
            # prefixes of the next order
            names = [None] * lv.size if with_bow and n > 1 else None
            kept = np.flatnonzero(lv.kept)
            for lo in range(0, len(kept), chunk):
                idx = kept[lo:lo + chunk]
                with np.errstate(divide="ignore"):
                    lp = np.log10(lv.prob[idx])
                lp[~np.isfinite(lp)] = _LOG10_ZERO  # <s>
                if n == 1:
                    name_of = [words[i] for i in idx.tolist()]
                else:
                    name_of = [f"{prev_names[p]} {words[w]}" for p, w in
                               zip(lv.prefix[idx].tolist(), lv.word[idx].tolist())]
                    if names is not None:
                        for i, name in zip(idx.tolist(), name_of):
                            names[i] = name
                if with_bow:
                    bw = np.log10(lv.bow[idx]).tolist()
                    child = lv.has_children[idx].tolist()
                    f.writelines(f"{a:.7f}\t{s}\t{b:.7f}\n" if c else f"{a:.7f}\t{s}\n"
                                 for a, s, b, c in zip(lp.tolist(), name_of, bw, child))
                else:
                    f.writelines(f"{a:.7f}\t{s}\n" for a, s in zip(lp.tolist(), name_of))
            if with_bow and n > 1:
                prev_names = names
        f.write("\n\\end\\\n")


def _atomic_write(path, write_fn) -> None:
    """Write through ``write_fn(textfile)`` to a temporary file next to ``path``, then
    rename it over ``path``; the temporary file gets the usual permissions (0666 & ~umask)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory,
                       f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------
# reading and scoring
# ---------------------------------------------------------------------------------------------

class ArpaLM:
    """A backoff n-gram model read from an ARPA file (log10 probabilities).

    ``logprob(word, history)``: ``log10 p(word | history)`` with the standard backoff rule
    ``p(w | h) = p*(h w)`` if ``h w`` is listed, else ``bow(h) p(w | h')`` (``bow`` = 1 for an
    unlisted ``h``).  Words missing from the vocabulary map to ``<unk>`` when the model has
    it; otherwise an unknown predicted word has log-probability ``-inf``, and ``evaluate`` /
    ``perplexity`` skip it (SRILM's convention) and count it as an OOV.

    N-grams are stored under integer keys (word ids 1..V in base V + 2), which takes a
    third of the memory of tuple keys.
    """

    def __init__(self, order: int, vocab: list[str], probs: dict, bows: dict):
        self.order = order
        self.vocab = vocab  # in file order
        self._ids = {w: i for i, w in enumerate(vocab, 1)}
        self._base = len(vocab) + 2  # id len(vocab) + 1: a word the model does not know
        self._probs = probs  # int key -> log10 p
        self._bows = bows  # int key -> log10 backoff weight
        self.unk = UNK if UNK in self._ids else None

    # -- inspection ---------------------------------------------------------------------------
    def _decode(self, key: int) -> tuple[str, ...]:
        words = []
        while key:
            key, i = divmod(key, self._base)
            words.append(self.vocab[i - 1])
        return tuple(reversed(words))

    def ngram_logprobs(self) -> dict[tuple[str, ...], float]:
        """Every listed n-gram (a tuple of words) -> its log10 probability."""
        return {self._decode(k): lp for k, lp in self._probs.items()}

    def backoff_weights(self) -> dict[tuple[str, ...], float]:
        """Every listed history (a tuple of words) -> its log10 backoff weight."""
        return {self._decode(k): b for k, b in self._bows.items()}

    def num_ngrams(self) -> list[int]:
        counts = [0] * self.order
        for k in self._probs:
            counts[len(self._decode(k)) - 1] += 1
        return counts

    # -- scoring --------------------------------------------------------------------------------
    def _id(self, word: str) -> int:
        i = self._ids.get(word)
        if i is None:
            i = self._ids[self.unk] if self.unk is not None else self._base - 1
        return i

    def logprob(self, word: str, history: Sequence[str] = ()) -> float:
        """log10 p(word | history); ``history`` ends just before ``word`` (start sentences
        with ``<s>``); only its last ``order - 1`` words matter."""
        wid = self._id(word)
        if wid == self._base - 1:
            return -math.inf
        base = self._base
        hist = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        hkeys = [0]  # hkeys[j]: key of the last j words of the history
        mult = 1
        for w in reversed(hist):
            hkeys.append(hkeys[-1] + self._id(w) * mult)
            mult *= base
        probs, bows = self._probs, self._bows
        backoff = 0.0
        for j in range(len(hkeys) - 1, -1, -1):
            lp = probs.get(hkeys[j] * base + wid)
            if lp is not None:
                return lp + backoff
            if j:
                backoff += bows.get(hkeys[j], 0.0)
        return -math.inf  # a listed word always has a unigram; not reached

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """log10 p(words </s> | <s>) (OOVs without ``<unk>`` in the model: skipped)."""
        return self.evaluate([words])[0]

    def evaluate(self, sentences: Iterable[Sequence[str]]) -> tuple[float, int, int]:
        """(total log10 probability, number of scored tokens (words + one </s> per sentence,
        OOVs excluded), number of OOV words skipped)."""
        total, n_tok, n_oov = 0.0, 0, 0
        known = self._ids
        for sent in sentences:
            if isinstance(sent, str):
                raise TypeError("a sentence must be a sequence of words, not a string")
            hist = [BOS]
            for w in list(sent) + [EOS]:
                if self.unk is None and w not in known:
                    n_oov += 1
                else:
                    total += self.logprob(w, hist)
                    n_tok += 1
                hist.append(w)
                if len(hist) >= self.order:
                    del hist[0]
        return total, n_tok, n_oov

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """10 ** (-total log10 p / scored tokens), ``</s>`` counted, OOVs without ``<unk>``
        skipped."""
        total, n_tok, _ = self.evaluate(sentences)
        if n_tok == 0:
            raise ValueError("nothing to score")
        return 10.0 ** (-total / n_tok)


def load_arpa(path) -> ArpaLM:
    """Read an ARPA file (plain or ``.gz``)."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    declared: dict[int, int] = {}
    vocab: list[str] = []
    ids: dict[str, int] = {}
    probs: dict[int, float] = {}
    bows: dict[int, float] = {}
    base = 0
    found = []
    section = None  # None: before \data\, 0: in \data\, n: in the n-grams
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if section and len(parts) >= 2 and parts[0][0] != "\\":
                n = section
                if len(parts) not in (n + 1, n + 2):
                    raise ValueError(f"{path}:{lineno}: malformed {n}-gram line {line!r}")
                if n == 1:
                    w = parts[1]
                    if w in ids:
                        raise ValueError(f"{path}:{lineno}: unigram {w!r} listed twice")
                    vocab.append(w)
                    key = ids[w] = len(vocab)
                else:
                    key = 0
                    try:
                        for w in parts[1:n + 1]:
                            key = key * base + ids[w]
                    except KeyError:
                        raise ValueError(f"{path}:{lineno}: word {w!r} is not a unigram") \
                            from None
                probs[key] = float(parts[0])
                if len(parts) == n + 2:
                    bows[key] = float(parts[n + 1])
                found[-1] += 1
                continue
            line = line.strip()
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:-len("-grams:")])
                if section != len(found) + 1 or section not in declared:
                    raise ValueError(f"{path}:{lineno}: unexpected section {line!r}")
                found.append(0)
                base = declared[1] + 2
            elif section == 0 and line.startswith("ngram "):
                n, c = line[len("ngram "):].split("=")
                declared[int(n)] = int(c)
            elif section is not None:
                raise ValueError(f"{path}:{lineno}: unexpected line {line!r}")
    if not declared:
        raise ValueError(f"{path}: no \\data\\ section")
    order = max(declared)
    if found != [declared.get(n, -1) for n in range(1, order + 1)]:
        raise ValueError(f"{path}: the header declares {declared} n-grams, found {found}")
    return ArpaLM(order, vocab, probs, bows)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

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
