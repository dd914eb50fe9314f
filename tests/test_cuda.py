"""On a CUDA device: the dispatch, its host syncs, and mixed-precision training steps.

Every test here is marked `cuda` and skips without a GPU (the default suite runs on CPU
machines); on a GPU machine `pytest -m cuda tests/test_cuda.py` runs them.
"""

import warnings

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def small_model(num_experts=8, layers=4):
    from speechmoe.config import ModelConfig
    from speechmoe.model import build_model

    cfg = ModelConfig(num_classes=50, d_model=64, ffn_dim=128, attention_ffn_dim=128,
                      attention_heads=4, num_layers=layers, attention_every=layers,
                      num_experts=num_experts, embedding_layers=2)
    return build_model(cfg)


def batch(device, B=4, T=60, input_dim=960, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, input_dim, generator=g)
    lengths = torch.tensor([T, T - 7, T - 20, T - 31])[:B]
    targets = torch.randint(1, 50, (B, 8), generator=g)
    tlen = torch.tensor([8, 7, 5, 4])[:B]
    return [t.to(device) for t in (x, lengths, targets, tlen)]


def test_dispatch_on_cuda_matches_the_cpu():
    from speechmoe.model.moe import MoELayer

    torch.manual_seed(0)
    layer = MoELayer(64, 128, num_experts=8)
    x = torch.randn(4, 50, 64)
    mask = torch.ones(4, 50, dtype=torch.bool)
    mask[2, 30:] = False
    y_cpu, r_cpu = layer(x, mask)
    y_gpu, r_gpu = layer.cuda()(x.cuda(), mask.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    assert torch.equal(r_gpu.counts.cpu(), r_cpu.counts)


def test_one_host_sync_per_moe_layer_on_cuda():
    """CUDA's sync debug mode reports every synchronizing call: a forward and backward
    of a model with 4 MoE layers (and its losses, with_floats=False) makes 4."""
    from speechmoe.config import LossConfig
    from speechmoe.losses import speechmoe_loss
    from speechmoe.train.routing_stats import RoutingTracker

    dev = torch.device("cuda")
    model = small_model(layers=4).to(dev)
    x, lengths, targets, tlen = batch(dev)
    tracker = RoutingTracker()
    for _ in range(2):  # the first pass may initialise libraries
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                out = model(x, lengths)
                loss, _ = speechmoe_loss(out, targets, tlen, LossConfig(), with_floats=False)
                loss.backward()
                tracker.update(out.routing)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(out.routing) == 4
    assert len(syncs) == 4, [str(w.message) for w in syncs]


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_mixed_precision_training_on_cuda_lowers_the_loss(amp):
    from speechmoe.config import LossConfig
    from speechmoe.losses import speechmoe_loss

    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = small_model().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    x, lengths, targets, tlen = batch(dev)
    losses = []
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=amp):
            out = model(x, lengths)
        assert out.log_probs.dtype == torch.float32
        assert all(r.probs.dtype == torch.float32 for r in out.routing)
        loss, _ = speechmoe_loss(out, targets, tlen, LossConfig())
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses


def test_compact_ctc_on_cuda_equals_torch_ctc():
    """losses.ctc_sum reads the occupancy off torch's CTC gradient (exp(lp) - occupancy);
    CUDA's kernel must follow the same convention as the CPU's."""
    import torch.nn.functional as F

    from speechmoe.losses import ctc_sum

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 60, 50, generator=g, dtype=torch.float64).cuda().requires_grad_()
    _, lengths, targets, tlen = batch("cuda")
    full = F.ctc_loss(torch.log_softmax(logits, -1).transpose(0, 1), targets, lengths, tlen,
                      reduction="sum")
    (full_grad,) = torch.autograd.grad(full, logits)
    compact = ctc_sum(torch.log_softmax(logits, -1), lengths, targets, tlen)
    (compact_grad,) = torch.autograd.grad(compact, logits)
    torch.testing.assert_close(compact, full)
    torch.testing.assert_close(compact_grad, full_grad)
