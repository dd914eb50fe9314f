"""Choosing the WFST acoustic scale on development data.

The search weighs ``acoustic_scale * log p(token)`` against the LM's log-probabilities
(speechmoe/decode/wfst.py), so the scale is the one free weight of WFST decoding. It is
chosen here, once for the toolkit: every tuning set is decoded at every candidate, the
errors of all the tuning sets are pooled (summed errors over summed reference tokens, so
a large set weighs by its size), and the candidate with the lowest pooled rate wins (the
first listed on a tie). Test sets are never tuning sets.

The decoding stage (local/decode.py) and the LM comparison (local/compare_lms.py) both
choose through ``choose_scale``; the result's ``to_json`` is the experiment's
``acoustic_scale.json`` (speechmoe/expdir.py), which export reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from speechmoe.lang.tokenizer import scoring_tokens
from speechmoe.scoring import ErrorStats, score

# The candidates when a command is given none: LM weights 1/scale from 1.4 down to 0.36.
DEFAULT_SCALES = (0.7, 1.0, 1.4, 2.0, 2.8)
DEFAULT_SCALES_TEXT = ",".join(f"{s:g}" for s in DEFAULT_SCALES)


def parse_scales(text: str) -> list[float]:
    """'0.7,1.0,1.4' -> [0.7, 1.0, 1.4]; every candidate positive, none twice."""
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--acoustic-scales {text!r}: expected comma-separated numbers, "
                         "e.g. 0.7,1.0,1.4") from None
    if not scales:
        raise ValueError(f"--acoustic-scales {text!r}: no candidate scale")
    if any(s <= 0 for s in scales):
        raise ValueError(f"--acoustic-scales {text!r}: every scale must be > 0")
    if len(set(scales)) != len(scales):
        raise ValueError(f"--acoustic-scales {text!r}: a scale is listed twice")
    return scales


def decode_at_scales(decoder, log_probs, scales: Sequence[float]) -> list[list[str]]:
    """One utterance's words at every scale (its posteriors are read once)."""
    return [decoder.decode(log_probs, acoustic_scale=s) for s in scales]


@dataclass
class ScaleChoice:
    """The chosen scale and the rates it was chosen on."""

    best: float
    metric: str                                    # CER, or WER for a BPE lang dir
    pooled: dict[float, ErrorStats]                # every tuning set together
    per_set: dict[str, dict[float, ErrorStats]]    # each tuning set alone

    def to_json(self) -> dict:
        """What acoustic_scale.json holds: every candidate's rate, pooled and per set,
        with the utterances and reference tokens it covers."""
        def rates(stats: Mapping[float, ErrorStats]) -> dict:
            first = next(iter(stats.values()))
            return {self.metric.lower(): {s: st.rate for s, st in stats.items()},
                    "utterances": first.utts, "ref_tokens": first.ref_len}

        return {"tune_set": " + ".join(self.per_set), **rates(self.pooled), "best": self.best,
                "per_set": {name: rates(st) for name, st in self.per_set.items()}}


def choose_scale(refs: Mapping[str, Mapping[str, Sequence[str]]],
                 hyps: Mapping[str, Mapping[float, Mapping[str, Sequence[str]]]],
                 metric: str) -> ScaleChoice:
    """The scale with the fewest errors over all the tuning sets together.

    refs: {set: {utterance: reference words}}; hyps: {set: {scale: {utterance: words}}},
    every set decoded at the same scales. Words are scored as ``metric`` counts them
    (characters for CER). A set without utterances is an error (a rate over nothing)."""
    if not refs:
        raise ValueError("no tuning set to choose the acoustic scale on")
    per_set: dict[str, dict[float, ErrorStats]] = {}
    scales: list[float] = []
    for name, set_refs in refs.items():
        by_scale = hyps[name]
        scales = scales or list(by_scale)
        if list(by_scale) != scales:
            raise ValueError(f"tuning set {name} was decoded at {list(by_scale)}, "
                             f"the others at {scales}")
        ref_tokens = {u: scoring_tokens(w, metric) for u, w in set_refs.items()}
        per_set[name] = {s: score(ref_tokens, {u: scoring_tokens(w, metric)
                                               for u, w in by_scale[s].items()})
                         for s in scales}
    pooled = {s: sum((st[s] for st in per_set.values()), ErrorStats()) for s in scales}
    best = min(scales, key=lambda s: pooled[s].rate)
    return ScaleChoice(best, metric, pooled, per_set)
