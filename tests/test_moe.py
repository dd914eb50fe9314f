"""Top-1 routing and dispatch (eq. 4-6, 8)."""

import math

import pytest
import torch

from speechmoe.model.moe import MoELayer


def dense_reference(layer: MoELayer, x: torch.Tensor, e: torch.Tensor | None = None):
    """Compute every expert on every frame, then keep the top-1 one, gated (eq. 6)."""
    h = layer.norm(x)
    router_in = h if e is None else torch.cat([e, h], -1)
    probs = torch.softmax(layer.router.proj(router_in), -1)
    all_out = torch.stack([expert(h) for expert in layer.experts], -2)  # (B, T, n, d)
    gate, idx = probs.max(-1)
    chosen = torch.gather(all_out, -2, idx[..., None, None].expand(*idx.shape, 1, h.shape[-1]))
    return x + gate[..., None] * chosen.squeeze(-2), probs, idx


@pytest.mark.parametrize("use_embedding", [False, True])
def test_routing_equals_dense_reference(use_embedding):
    torch.manual_seed(0)
    d, n = 16, 4
    layer = MoELayer(d, 32, num_experts=n, embedding_dim=8 if use_embedding else 0)
    x = torch.randn(3, 11, d)
    e = torch.randn(3, 11, 8) if use_embedding else None
    y, routing = layer(x, embedding=e)
    ref, probs, idx = dense_reference(layer, x, e)
    assert torch.allclose(y, ref, atol=1e-5)
    assert torch.equal(routing.expert_index, idx.reshape(-1))
    assert torch.allclose(routing.probs, probs.reshape(-1, n))
    assert torch.equal(routing.counts, torch.bincount(idx.reshape(-1), minlength=n))
    # Several experts are really used, so the comparison exercised the dispatch.
    assert (routing.counts > 0).sum() >= 2


def test_eq8_router_sees_embedding_and_previous_output():
    layer = MoELayer(16, 32, num_experts=4, embedding_dim=16)
    assert layer.router.proj.weight.shape == (4, 32)
    assert layer.router.proj.bias is None
    with pytest.raises(ValueError, match="embedding"):
        layer(torch.randn(1, 3, 16))


def test_gradients_reach_router_through_the_gate():
    torch.manual_seed(0)
    layer = MoELayer(8, 16, num_experts=3)
    x = torch.randn(2, 5, 8)
    y, _ = layer(x)
    y.pow(2).sum().backward()
    g = layer.router.proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    # Hand check: with the experts fixed, d loss / d gate_i = <dL/dy_i, E(h_i)>.
    layer.zero_grad()
    h = layer.norm(x).detach()
    _, _, idx = dense_reference(layer, x)
    probs = torch.softmax(layer.router.proj(h), -1)
    gate = probs.max(-1).values
    expert_out = torch.stack([ex(h) for ex in layer.experts], -2)
    chosen = torch.gather(expert_out, -2, idx[..., None, None].expand(2, 5, 1, 8)).squeeze(-2)
    (x + gate[..., None] * chosen.detach()).pow(2).sum().backward()
    g_gate_only = layer.router.proj.weight.grad.clone()
    layer.zero_grad()
    y, _ = layer(x)
    # The router's gradient in the full layer equals the one through the gate alone.
    y.pow(2).sum().backward()
    assert torch.allclose(layer.router.proj.weight.grad, g_gate_only, atol=1e-5)


def test_idle_experts_get_zero_gradients_not_none():
    torch.manual_seed(0)
    layer = MoELayer(8, 16, num_experts=4)
    with torch.no_grad():  # route every frame to expert 2: only its logit depends on h_0
        layer.router.proj.weight.zero_()
        layer.router.proj.weight[2, 0] = 50.0
    x = torch.randn(2, 6, 8)
    x[..., 0] = 10.0  # h_0 stays large and positive after LayerNorm
    y, routing = layer(x)
    assert routing.counts.tolist() == [0, 0, 12, 0]
    y.sum().backward()
    for e, expert in enumerate(layer.experts):
        for p in expert.parameters():
            assert p.grad is not None, "DDP needs a gradient for every parameter"
            assert (p.grad.abs().sum() > 0) == (e == 2)


def test_padding_frames_change_no_statistic_and_no_real_output():
    torch.manual_seed(0)
    layer = MoELayer(8, 16, num_experts=4)
    x = torch.randn(2, 7, 8)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    y1, r1 = layer(x, mask)
    x2 = x.clone()
    x2[1, 4:] = 100 * torch.randn(3, 8)  # change only padding frames
    y2, r2 = layer(x2, mask)
    real = mask.reshape(-1)
    assert int(r1.valid.sum()) == 11 and int(r1.counts.sum()) == 11
    assert (r1.expert_index[~real] == -1).all() and (r1.expert_index[real] >= 0).all()
    assert torch.equal(r1.probs[real], r2.probs[real])
    for name in ("expert_index", "counts", "valid"):
        assert torch.equal(getattr(r1, name), getattr(r2, name)), name
    assert torch.allclose(y1[mask], y2[mask])
    # Padding frames are processed by no expert: the residual passes them through.
    assert torch.allclose(y2[1, 4:], x2[1, 4:])


def test_static_layer_has_no_router():
    layer = MoELayer(8, 16, num_experts=1)
    assert layer.router is None
    y, routing = layer(torch.randn(1, 4, 8))
    assert routing is None and y.shape == (1, 4, 8)


class Double(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def test_dispatch_hand_values():
    layer = MoELayer(1, 2, num_experts=2)
    layer.experts = torch.nn.ModuleList([torch.nn.Identity(), Double()])
    x = torch.tensor([[1.0], [2.0], [3.0]])
    out = layer.dispatch(x, torch.tensor([1, -1, 0]), torch.tensor([0.5, 0.9, 0.25]))
    assert out.tolist() == [[1.0], [0.0], [0.75]]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("embedding_dim", [0, 8])
def test_moe_layer_scripts_and_exports(embedding_dim):
    torch.manual_seed(0)
    layer = MoELayer(16, 32, num_experts=4, embedding_dim=embedding_dim).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    e = torch.randn(2, 5, 8) if embedding_dim else None
    y, routing = layer(x, mask, e)
    scripted = torch.jit.script(layer)
    y_s, routing_s = scripted(x, mask, e)
    assert torch.allclose(y_s, y, atol=1e-6) and torch.equal(routing_s.counts, routing.counts)
    args = (x, mask) if e is None else (x, mask, e)
    exported = torch.export.export(layer, args).module()
    assert torch.allclose(exported(*args)[0], y, atol=1e-6)


def test_one_host_sync_per_moe_layer_forward_and_backward():
    """The dispatch reads one value back per layer (the block sizes); routing statistics
    and the losses add none. The per-expert loop it replaced took 2 per expert + 3."""
    from helpers import count_host_syncs

    from speechmoe.config import LossConfig, ModelConfig
    from speechmoe.losses import speechmoe_loss
    from speechmoe.model import build_model
    from speechmoe.train.routing_stats import RoutingTracker

    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=10, d_model=16, ffn_dim=32, attention_ffn_dim=32,
                      attention_heads=2, num_layers=3, attention_every=3, num_experts=4,
                      embedding_layers=1)
    model = build_model(cfg)
    x = torch.randn(2, 30, cfg.input_dim)
    lengths = torch.tensor([30, 21])
    targets, tlen = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    tracker = RoutingTracker()

    def step():
        out = model(x, lengths)
        loss, _ = speechmoe_loss(out, targets, tlen, LossConfig(), with_floats=False)
        loss.backward()
        tracker.update(out.routing)
        return out

    out, events = count_host_syncs(step)
    assert len(out.routing) == 3
    assert events == ["Tensor.tolist"] * 3, events
    h = torch.randn(12, 16)
    idx = torch.tensor([0, 1, 2, 3, -1, 0, 1, 2, 3, 0, 1, -1])
    gate = torch.rand(12)
    moe = MoELayer(16, 32, num_experts=4)
    _, loop_events = count_host_syncs(moe._dispatch_loop, h, idx, gate)
    assert len(loop_events) == 4  # one torch.where per expert: the counter sees them


def test_sorted_dispatch_equals_the_per_expert_loop_with_gradients():
    """The one-sync dispatch (sort by expert, split once) gives the per-expert
    gather / index_add_ loop's outputs and gradients, padding rows and idle experts
    included."""
    torch.manual_seed(0)
    layer = MoELayer(16, 32, num_experts=8)
    x = torch.randn(3, 13, 16, requires_grad=True)
    mask = torch.ones(3, 13, dtype=torch.bool)
    mask[1, 9:] = False
    mask[2, 4:] = False

    def run(dispatch):
        h = layer.norm(x).reshape(-1, 16)
        probs = layer.router(h)
        gate, idx = probs.max(-1)
        idx = idx.masked_fill(~mask.reshape(-1), -1)
        idx[idx == 7] = 6  # expert 7 idle
        y = dispatch(h, idx, gate)
        grads = torch.autograd.grad(y.pow(2).sum(), [x, *layer.parameters()])
        return y, grads

    y_sort, g_sort = run(layer.dispatch)
    y_loop, g_loop = run(layer._dispatch_loop)
    torch.testing.assert_close(y_sort, y_loop, rtol=0, atol=1e-6)
    for a, b in zip(g_sort, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    idle = list(layer.experts[7].parameters())
    assert all(g.abs().sum() == 0 for g, p in zip(g_sort[1:], layer.parameters())
               if any(p is q for q in idle))


@pytest.mark.parametrize("gain", [0.0, 0.5])
def test_router_initialisation(gain):
    """gain 0: nn.Linear's default, uniform within 1/sqrt(in); > 0: Xavier-uniform within
    gain * sqrt(6 / (in + n)) (the authors' 3M toolkit: 0.5)."""
    torch.manual_seed(0)
    d, n = 512, 8
    w = MoELayer(256, 64, num_experts=n, embedding_dim=256, router_init_gain=gain
                 ).router.proj.weight.detach()
    bound = gain * math.sqrt(6 / (d + n)) if gain else 1 / math.sqrt(d)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform's std


def test_router_logsumexp_is_reported_per_frame():
    torch.manual_seed(0)
    layer = MoELayer(16, 32, num_experts=4)
    x = torch.randn(2, 5, 16)
    _, routing = layer(x)
    logits = layer.router.proj(layer.norm(x).reshape(10, 16))
    assert torch.allclose(routing.log_z, torch.logsumexp(logits, -1), atol=1e-6)


def test_routing_tracker_summary_hand_values():
    """Fractions, entropy, gate and logit scale over the real frames; padding left out."""
    from speechmoe.model.moe import RoutingInfo
    from speechmoe.train.routing_stats import RoutingTracker

    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [9.0, -9.0]])  # last: padding
    probs = torch.softmax(logits, -1)
    index = torch.tensor([0, 0, -1])
    tracker = RoutingTracker()
    tracker.update([RoutingInfo(probs, torch.logsumexp(logits, -1), index,
                                torch.tensor([2, 0]), torch.tensor([1.0, 1.0, 0.0]))])
    (s,) = tracker.summary()
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert s["fraction"] == [1.0, 0.0] and s["unused_experts"] == 1
    assert s["entropy"] == pytest.approx((math.log(2) + h) / 2)
    assert s["mean_gate"] == pytest.approx((0.5 + 0.75) / 2)
    assert s["mean_log_z"] == pytest.approx((math.log(2) + math.log(4)) / 2)
