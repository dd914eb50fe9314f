"""Relative-entropy pruning of a backoff n-gram model (Stolcke 1998; SRILM's ``-prune``).

``entropy_prune`` works order by order from the highest: an n-gram ``h w`` is removed when
removing it alone (with the backoff weight of ``h`` recomputed) raises the model's
perplexity by a relative amount below the threshold, i.e. when ``exp(D) - 1 < threshold``
with ``D = -P(h) {p(w|h) [ln p'(w|h) - ln p(w|h)] + [ln a'(h) - ln a(h)] sum_{v unseen
after h} p(v|h)}`` (for small D, ``exp(D) - 1 ~ D``, the entropy change in nats).  ``P(h)``
is the model's own probability of the history (``<s>`` has probability 1).  N-grams that
are the prefix or the suffix of a kept higher-order n-gram are never removed; unigrams are
never removed.  The caller (``speechmoe.lang.kneser_ney.estimate_kneser_ney``) recomputes
the final backoff weights afterwards.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

_BOS = 0  # the word id of <s> (speechmoe.lang.kneser_ney)


def entropy_prune(levels, threshold: float) -> None:
    """Stolcke (1998) pruning, in place, of the estimator's levels (``kept`` flags and
    backoff weights): see the module docstring."""
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
