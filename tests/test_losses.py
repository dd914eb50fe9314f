"""The SpeechMoE losses against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechmoe.config import LossConfig
from speechmoe.losses import (ctc_loss, ctc_sum, mean_importance, router_z_loss, sparsity_l1,
                              speechmoe_loss, switch_balance)
from speechmoe.model.acoustic import ModelOutput
from speechmoe.model.moe import RoutingInfo


@pytest.mark.parametrize("n", [2, 4, 8])
def test_sparsity_l1_one_hot_is_1_and_uniform_is_sqrt_n(n):
    one_hot = torch.eye(n)
    uniform = torch.full((5, n), 1.0 / n)
    assert sparsity_l1(one_hot).item() == pytest.approx(1.0)
    assert sparsity_l1(uniform).item() == pytest.approx(math.sqrt(n))


def test_sparsity_l1_hand_value():
    # f = (0.6, 0.4): ||f||_1 / ||f||_2 = 1 / sqrt(0.52); f = (1, 0): 1. Mean of the two.
    probs = torch.tensor([[0.6, 0.4], [1.0, 0.0]])
    assert sparsity_l1(probs).item() == pytest.approx((1 / math.sqrt(0.52) + 1) / 2, rel=1e-6)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_mean_importance_minimum_1_at_uniform_and_n_when_collapsed(n):
    assert mean_importance(torch.full((7, n), 1.0 / n)).item() == pytest.approx(1.0)
    collapsed = torch.zeros(7, n)
    collapsed[:, 0] = 1
    assert mean_importance(collapsed).item() == pytest.approx(float(n))
    # Balanced importance from one-hot rows is also the minimum.
    assert mean_importance(torch.eye(n)).item() == pytest.approx(1.0)


def test_mean_importance_hand_value():
    # Imp = (0.4, 0.6) -> 2 * (0.16 + 0.36) = 1.04
    probs = torch.tensor([[0.7, 0.3], [0.1, 0.9]])
    assert mean_importance(probs).item() == pytest.approx(1.04, rel=1e-6)


def test_switch_balance_hand_value():
    probs = torch.tensor([[0.7, 0.3], [0.1, 0.9], [0.8, 0.2]])
    index = torch.tensor([0, 1, 0])
    s = torch.tensor([2 / 3, 1 / 3])
    P = torch.tensor([1.6 / 3, 1.4 / 3])
    expected = 2 * float((s * P).sum())  # = 1.0222...
    assert switch_balance(probs, index).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.0222222, rel=1e-6)


def test_switch_balance_gradient_only_through_probabilities():
    probs = torch.tensor([[0.7, 0.3], [0.1, 0.9]], requires_grad=True)
    switch_balance(probs, torch.tensor([0, 1])).backward()
    # d/dp_ij of n * sum_j s_j * mean_i p_ij = n * s_j / m = 2 * 0.5 / 2
    assert torch.allclose(probs.grad, torch.full((2, 2), 0.5))


def test_ctc_loss_hand_value_per_frame():
    # T = 2 frames, units {blank, a}, target "a": paths (a,a), (blank,a), (a,blank).
    p = torch.tensor([[0.3, 0.7], [0.6, 0.4]])  # rows: frames; cols: blank, a
    prob = p[0, 1] * p[1, 1] + p[0, 0] * p[1, 1] + p[0, 1] * p[1, 0]
    log_probs = p.log().unsqueeze(0)
    loss = ctc_loss(log_probs, torch.tensor([2]), torch.tensor([[1]]), torch.tensor([1]))
    assert loss.item() == pytest.approx(float(-prob.log()) / 2, rel=1e-5)


def test_ctc_loss_is_inf_when_labels_do_not_fit():
    # "a a" needs 3 frames (a, blank, a); one frame cannot align it: never silently zero.
    log_probs = torch.log_softmax(torch.randn(1, 1, 3), -1)
    loss = ctc_loss(log_probs, torch.tensor([1]), torch.tensor([[1, 1]]), torch.tensor([2]))
    assert math.isinf(loss.item())


def test_compact_ctc_equals_torch_ctc_over_the_whole_vocabulary():
    """ctc_sum gathers each utterance's own columns: value and gradient (through the
    log-softmax, as in training) equal to torch's CTC over all C classes, with labels
    repeated in consecutive positions (a blank between them needed) and not, frames
    past an utterance's length, an empty transcript and concatenated targets."""
    torch.manual_seed(0)
    B, T, C = 5, 30, 50
    logits = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([30, 25, 20, 12, 30])
    target_lengths = torch.tensor([8, 5, 6, 0, 10])
    targets = torch.randint(1, C, (B, 10))
    targets[0, 1] = targets[0, 2] = targets[0, 5] = targets[0, 0]
    targets[4, 3] = targets[4, 4]

    def loss_and_grad(fn):
        loss = fn(torch.log_softmax(logits, -1))
        (grad,) = torch.autograd.grad(loss, logits)
        return loss.item(), grad

    full, full_grad = loss_and_grad(lambda lp: F.ctc_loss(
        lp.transpose(0, 1), targets, lengths, target_lengths, reduction="sum"))
    compact, compact_grad = loss_and_grad(
        lambda lp: ctc_sum(lp, lengths, targets, target_lengths))
    assert compact == pytest.approx(full, rel=1e-12)
    assert torch.allclose(compact_grad, full_grad, atol=1e-12)
    concatenated = torch.cat([targets[b, :target_lengths[b]] for b in range(B)])
    log_probs = torch.log_softmax(logits, -1)
    assert ctc_sum(log_probs, lengths, concatenated, target_lengths).item() == (
        pytest.approx(full, rel=1e-12))
    # with respect to the log-probs themselves the gradient is minus the occupancy
    # (torch's own is exp(lp) minus it): -1 summed over a real frame, 0 past the length
    lp = log_probs.detach().requires_grad_()
    ctc_sum(lp, lengths, targets, target_lengths).backward()
    per_frame = lp.grad.sum(-1)
    assert torch.allclose(per_frame[1, :25], torch.full((25,), -1.0, dtype=torch.float64))
    assert torch.all(per_frame[1, 25:] == 0)


@pytest.mark.parametrize("block", [512, 7])
def test_ctc_from_logits_equals_ctc_from_log_probs(block, monkeypatch):
    """ctc_sum(logits=True) (the trainer's path: the picked columns' log-softmax from the
    logits, speechmoe.losses.gathered_log_softmax) gives the loss and the gradient with
    respect to the logits of the log-softmax path, with a label repeated apart (two
    columns of one class), frames past an utterance's length and an empty transcript;
    and from bf16 logits, the loss of their float32 log-softmax and a bf16 gradient.
    Block 7: the CPU's blocks of frames, ending mid-utterance and with a short last one."""
    from speechmoe.losses import _GatheredLogSoftmax

    monkeypatch.setattr(_GatheredLogSoftmax, "CPU_BLOCK", block)
    torch.manual_seed(1)
    B, T, C = 4, 20, 30
    logits = torch.randn(B, T, C, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([20, 14, 9, 20])
    target_lengths = torch.tensor([6, 4, 0, 7])
    targets = torch.randint(1, C, (B, 7))
    targets[0, 3] = targets[0, 0]  # the same class at two positions, not consecutive
    targets[3, 2] = targets[3, 1]  # and consecutive

    def loss_and_grad(x, **kw):
        loss = ctc_sum(x, lengths, targets, target_lengths, **kw)
        (grad,) = torch.autograd.grad(loss, logits)
        return loss.item(), grad

    ref, ref_grad = loss_and_grad(torch.log_softmax(logits, -1))
    fused, fused_grad = loss_and_grad(logits, logits=True)
    assert fused == pytest.approx(ref, rel=1e-12)
    assert torch.allclose(fused_grad, ref_grad, atol=1e-12)
    assert torch.all(fused_grad[1, 14:] == 0) and torch.all(fused_grad[2, 9:] == 0)

    low = logits.detach().to(torch.bfloat16).requires_grad_()
    loss = ctc_sum(low, lengths, targets, target_lengths, logits=True)
    loss.backward()
    expect = ctc_sum(torch.log_softmax(low.detach().float(), -1), lengths, targets,
                     target_lengths)
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    assert torch.allclose(low.grad.double(), ref_grad, atol=2e-2)


def test_compact_ctc_is_inf_when_labels_do_not_fit():
    log_probs = torch.log_softmax(torch.randn(2, 3, 10), -1)
    loss = ctc_sum(log_probs, torch.tensor([3, 3]), torch.tensor([[1, 2, 3, 4], [1, 1, 0, 0]]),
                   torch.tensor([4, 2]))
    assert math.isinf(loss.item())


def _output(with_emb: bool):
    torch.manual_seed(0)
    B, T, C, n = 2, 6, 4, 3
    lp = torch.log_softmax(torch.randn(B, T, C), -1)
    elp = torch.log_softmax(torch.randn(B, T, C), -1) if with_emb else None
    routing = []
    for _ in range(2):
        logits = torch.randn(10, n)
        probs = torch.softmax(logits, -1)
        index = probs.argmax(-1)
        routing.append(RoutingInfo(probs, torch.logsumexp(logits, -1), index,
                                   torch.bincount(index, minlength=n), torch.ones(10)))
    return ModelOutput(lp, torch.tensor([6, 4]), elp, routing)


def test_padding_rows_of_the_routing_change_no_loss():
    """Rows with valid 0 (padding: expert -1, any probabilities) weigh nothing."""
    out = _output(with_emb=False)
    padded = []
    for r in out.routing:
        junk = 10 * torch.randn(5, r.probs.shape[1])
        padded.append(RoutingInfo(torch.cat([r.probs, torch.softmax(junk, -1)]),
                                  torch.cat([r.log_z, torch.logsumexp(junk, -1)]),
                                  torch.cat([r.expert_index, torch.full((5,), -1)]),
                                  r.counts, torch.cat([r.valid, torch.zeros(5)])))
    targets, tlen = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    for balance in ("mean_importance", "switch"):
        cfg = LossConfig(balance, 0.1, 0.1, 0.0, z_loss=0.01)
        a = speechmoe_loss(out, targets, tlen, cfg)
        b = speechmoe_loss(out._replace(routing=padded), targets, tlen, cfg)
        assert a[1] == pytest.approx(b[1], rel=1e-6) and a[0].item() == pytest.approx(
            b[0].item(), rel=1e-6)


def test_total_loss_is_eq12_combination():
    out = _output(with_emb=True)
    targets = torch.tensor([[1, 2], [3, 0]])
    tlen = torch.tensor([2, 1])
    cfg = LossConfig(balance="mean_importance", alpha=0.1, beta=0.2, gamma=0.01)
    total, parts = speechmoe_loss(out, targets, tlen, cfg)
    l_c = ctc_loss(out.log_probs, out.lengths, targets, tlen).item()
    l_e = ctc_loss(out.embedding_log_probs, out.lengths, targets, tlen).item()
    l_s = sum(sparsity_l1(r.probs).item() for r in out.routing) / 2
    l_m = sum(mean_importance(r.probs).item() for r in out.routing) / 2
    assert parts == pytest.approx({"ctc": l_c, "sparsity": l_s, "importance": l_m,
                                   "embedding_ctc": l_e}, rel=1e-5)
    assert total.item() == pytest.approx(l_c + 0.1 * l_s + 0.2 * l_m + 0.01 * l_e, rel=1e-5)


def test_router_z_loss_hand_value():
    # logits (0, 0) and (ln 3, 0): logsumexp ln 2 and ln 4
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    assert router_z_loss(torch.logsumexp(logits, -1)).item() == pytest.approx(expected)
    probs, log_z = torch.softmax(logits, -1), torch.logsumexp(logits, -1)
    index = probs.argmax(-1)
    routing = [RoutingInfo(probs, log_z, index, torch.bincount(index, minlength=2),
                           torch.ones(2))] * 2
    out = ModelOutput(torch.log_softmax(torch.randn(1, 4, 3), -1), torch.tensor([4]), None,
                      routing)
    targets, tlen = torch.tensor([[1, 2]]), torch.tensor([2])
    plain = speechmoe_loss(out, targets, tlen, LossConfig("none", 0.0, 0.0, 0.0))
    total, parts = speechmoe_loss(out, targets, tlen,
                                  LossConfig("none", 0.0, 0.0, 0.0, z_loss=0.5))
    assert parts["z_loss"] == pytest.approx(expected)  # the mean over the 2 layers
    assert total.item() == pytest.approx(plain[0].item() + 0.5 * expected)
    # "utterance" normalization sums the router terms over the layers
    _, parts = speechmoe_loss(out, targets, tlen, LossConfig(
        "none", 0.0, 0.0, 0.0, normalization="utterance", z_loss=0.5))
    assert parts["z_loss"] == pytest.approx(2 * expected)


def test_total_loss_switch_variant_and_static_model():
    out = _output(with_emb=False)
    targets, tlen = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    _, parts = speechmoe_loss(out, targets, tlen, LossConfig("switch", 0.0, 0.1, 0.0))
    assert set(parts) == {"ctc", "balance"}
    static = out._replace(routing=[])
    total, parts = speechmoe_loss(static, targets, tlen, LossConfig("none", 0.0, 0.0, 0.0))
    assert set(parts) == {"ctc"} and total.item() == pytest.approx(parts["ctc"])
    with pytest.raises(ValueError, match="embedding"):
        speechmoe_loss(out, targets, tlen, LossConfig("none", 0.0, 0.0, 0.01))


def test_utterance_normalization_is_the_authors_convention():
    """normalization "utterance" (tencent-ailab/3m-asr): CTC summed per utterance and
    averaged over the batch, router losses summed over the MoE layers."""
    import torch.nn.functional as F

    out = _output(with_emb=True)
    targets, tlen = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    cfg = LossConfig("mean_importance", 0.1, 0.2, 0.01, normalization="utterance")
    total, parts = speechmoe_loss(out, targets, tlen, cfg)
    per_utt = F.ctc_loss(out.log_probs.transpose(0, 1), targets, out.lengths, tlen,
                         reduction="none")
    emb = F.ctc_loss(out.embedding_log_probs.transpose(0, 1), targets, out.lengths, tlen,
                     reduction="none")
    l_s = sum(sparsity_l1(r.probs).item() for r in out.routing)
    l_m = sum(mean_importance(r.probs).item() for r in out.routing)
    assert parts == pytest.approx({"ctc": per_utt.mean().item(), "sparsity": l_s,
                                   "importance": l_m, "embedding_ctc": emb.mean().item()},
                                  rel=1e-5)
    assert total.item() == pytest.approx(per_utt.mean().item() + 0.1 * l_s + 0.2 * l_m
                                         + 0.01 * emb.mean().item(), rel=1e-5)
    _, frame = speechmoe_loss(out, targets, tlen, LossConfig("mean_importance", 0.1, 0.2, 0.01))
    # 10 output frames over 2 utterances: per-utterance CTC is 5x the per-frame one
    assert parts["ctc"] == pytest.approx(5 * frame["ctc"], rel=1e-5)
    # the count the trainer weighs accumulated parts by: utterances here, frames otherwise
    _, floats = speechmoe_loss(out, targets, tlen, cfg, with_floats=False)
    assert floats["frames"].item() == 2
    from speechmoe.config import ConfigError, SystemConfig

    with pytest.raises(ConfigError, match="normalization"):
        sc = SystemConfig()
        sc.loss.normalization = "token"
        sc.validate()
