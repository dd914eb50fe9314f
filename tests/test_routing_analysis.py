"""What the routers follow (speechmoe.analysis.routing): NMI, alignment, toys with known
answers, and the speaker NMI that validation logs."""

import math

import numpy as np
import pytest
import torch

from speechmoe.analysis.routing import (RoutingCounts, ctc_align, nmi, report, syllable_parts,
                                        token_classes)
from speechmoe.train.validate import speaker_nmi

UNITS = ["<blk>", "ma1", "ma3", "zhuang4", "an2", "AA"]


def test_nmi_by_hand():
    assert nmi([[5, 0], [0, 3]]) == pytest.approx(1.0)
    assert nmi([[2, 2], [3, 3]]) == pytest.approx(0.0, abs=1e-12)
    # [[3, 1], [1, 3]]: H(X) = H(Y) = ln 2, H(X, Y) = ln 2 + h(1/4) with h the binary
    # entropy, so NMI = (ln 2 - h(1/4)) / ln 2
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert nmi([[3, 1], [1, 3]]) == pytest.approx((math.log(2) - h) / math.log(2))
    # one expert used: the expert says nothing about the speaker
    assert nmi([[4, 2, 1]]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="no frames"):
        nmi([[0, 0]])
    with pytest.raises(ValueError, match="one value each"):
        nmi([[7]])


def test_syllables_split_into_initial_final_tone():
    assert syllable_parts("zhuang4") == ("zh", "uang", "4")
    assert syllable_parts("ma1") == ("m", "a", "1")
    assert syllable_parts("an2") == ("-", "an", "2")
    assert syllable_parts("er5") == ("-", "er", "5")
    assert syllable_parts("AA") is None and syllable_parts("<blk>") is None
    classes = token_classes(UNITS)
    assert classes["tone"] == ["<blank>", "1", "3", "4", "2", "other"]
    assert classes["initial"] == ["<blank>", "m", "m", "zh", "-", "other"]
    assert classes["final"] == ["<blank>", "a", "a", "uang", "an", "other"]


def _peaked(path, num_classes=6):
    """Log-probs whose best frame-wise choice is `path`."""
    lp = np.full((len(path), num_classes), math.log(0.02))
    lp[np.arange(len(path)), path] = math.log(0.9)
    return lp


def test_ctc_alignment_follows_the_best_path():
    assert ctc_align(_peaked([0, 1, 1, 0, 2]), [1, 2]).tolist() == [0, 1, 1, 0, 2]
    # the frames prefer label 1 everywhere, but the transcript is 1 2: the path must end in 2
    assert ctc_align(_peaked([1, 1, 1, 1]), [1, 2]).tolist() == [1, 1, 1, 2]
    # a repeated label needs a blank between its two tokens
    assert ctc_align(_peaked([1, 1, 1]), [1, 1]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="cannot be aligned"):
        ctc_align(_peaked([1, 1]), [1, 1])


def _toy(follow_speaker: bool) -> RoutingCounts:
    """Two layers, two speakers of 8 frames each. Speaker A says ma1 x3, ma3 x1; B says
    ma3 x3, ma1 x1 (twice over). follow_speaker: A's frames go to expert 0, B's to expert 1;
    else every speaker's frames alternate between the experts."""
    counts = RoutingCounts(num_experts=2, num_tokens=len(UNITS))
    says = {"A": [1, 1, 1, 2] * 2, "B": [2, 2, 2, 1] * 2}
    for k, (spk, tokens) in enumerate(says.items()):
        e = np.full(8, k) if follow_speaker else np.array([0, 1, 1, 0] * 2)
        counts.add(np.stack([e, e]), spk, np.array(tokens))
    return counts


def test_routing_that_follows_the_speaker_has_speaker_nmi_1():
    rep = report(_toy(True), UNITS)
    assert rep["speakers"] == 2 and len(rep["layers"]) == 2
    layer = rep["layers"][0]
    assert layer["frames"] == 16 and layer["expert_shares"] == [0.5, 0.5]
    assert layer["speaker_nmi"] == pytest.approx(1.0)
    assert layer["per_speaker"] == {"A": [1.0, 0.0], "B": [0.0, 1.0]}
    # expert x token = [[6, 2], [2, 6]] (ma1, ma3): as [[3, 1], [1, 3]] by hand above
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    want = round((math.log(2) - h) / math.log(2), 4)
    assert layer["token_nmi"] == pytest.approx(want, abs=1e-4)
    # the tokens differ by tone only (same initial m and final a): tone NMI = token NMI,
    # and the initial and final say nothing
    assert layer["tone_nmi"] == pytest.approx(want, abs=1e-4)
    assert layer["per_tone"] == {"1": [0.75, 0.25], "3": [0.25, 0.75]}


def test_routing_that_ignores_the_speaker_has_nmi_0():
    layer = report(_toy(False), UNITS)["layers"][1]
    assert layer["speaker_nmi"] == pytest.approx(0.0, abs=1e-4)
    assert layer["per_speaker"] == {"A": [0.5, 0.5], "B": [0.5, 0.5]}
    # expert 0 gets frames 0 and 3 of each block: A ma1 ma3, B ma3 ma1 -> independent
    assert layer["token_nmi"] == pytest.approx(0.0, abs=1e-4)


def test_validation_speaker_nmi_per_layer():
    experts = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])  # (layers, frames)
    assert speaker_nmi(experts, ["a", "a", "b", "b"]) == [1.0, 0.0]
    assert speaker_nmi(experts, ["a", None, "b", "b"]) is None  # a speaker unknown
    assert speaker_nmi(None, []) is None  # no routing
