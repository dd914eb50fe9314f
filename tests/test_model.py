"""The composed acoustic model: masks, look-ahead, the embedding network, systems by config."""

import pytest
import torch

from speechmoe.config import ModelConfig
from speechmoe.model import SpeechMoE


def small(**kw):
    base = dict(input_dim=24, num_classes=11, d_model=16, num_layers=4, attention_every=2,
                ffn_dim=32, num_experts=3, attention_heads=2, attention_ffn_dim=32,
                embedding_layers=2)
    base.update(kw)
    return ModelConfig(**base)


def randomize_memory(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lookback" in name or "lookahead" in name:
                p.normal_(0, 0.3)


def test_padded_batch_equals_each_utterance_alone():
    torch.manual_seed(0)
    model = SpeechMoE(small()).eval()
    randomize_memory(model)
    feats = torch.randn(2, 13, 24)
    lengths = torch.tensor([13, 8])
    out = model(feats, lengths)
    alone = model(feats[1:, :8], torch.tensor([8]))
    assert torch.allclose(out.log_probs[1, :8], alone.log_probs[0], atol=1e-5)
    # Routing statistics count only real frames.
    assert all(int(r.counts.sum()) == 21 for r in out.routing)


def test_model_lookahead_is_layers_times_memory_lookahead_without_attention():
    torch.manual_seed(0)
    cfg = small(attention_every=0, embedding_layers=3, memory_lookahead_order=2,
                memory_lookahead_stride=1)
    model = SpeechMoE(cfg).eval()
    randomize_memory(model)
    # Look-ahead adds up along the longest path: the embedding net feeding the first
    # router (3 memory layers x 2 frames), then the 4 backbone memory layers (x 2 frames).
    horizon = (cfg.embedding_layers + cfg.num_layers) * 2
    T, t = 40, 10
    feats = torch.randn(1, T, 24)
    base = model(feats, torch.tensor([T])).log_probs[0, t]
    far = feats.clone()
    far[0, t + horizon + 1:] = torch.randn(T - t - horizon - 1, 24)
    assert torch.equal(model(far, torch.tensor([T])).log_probs[0, t], base)
    near = feats.clone()
    near[0, t + horizon] += 1  # the farthest frame inside the look-ahead
    assert not torch.equal(model(near, torch.tensor([T])).log_probs[0, t], base)


def test_static_b1_has_no_router_and_no_embedding():
    model = SpeechMoE(small(num_experts=1, router_input="previous", embedding_layers=0))
    out = model(torch.randn(1, 5, 24), torch.tensor([5]))
    assert out.routing == [] and out.embedding_log_probs is None and model.embedding is None
    assert not any("router" in n for n, _ in model.named_parameters())


def test_embedding_ctc_head_runs_in_training_only_by_default():
    model = SpeechMoE(small())
    feats, lengths = torch.randn(2, 6, 24), torch.tensor([6, 4])
    assert model.train()(feats, lengths).embedding_log_probs.shape == (2, 6, 11)
    assert model.eval()(feats, lengths).embedding_log_probs is None
    assert model.eval()(feats, lengths, with_embedding_loss=True).embedding_log_probs is not None


def test_routing_per_layer_and_log_probs_normalised():
    model = SpeechMoE(small())
    out = model(torch.randn(2, 6, 24), torch.tensor([6, 3]))
    assert len(out.routing) == 4
    assert torch.allclose(out.log_probs.exp().sum(-1), torch.ones(2, 6), atol=1e-5)


def test_logits_output_gives_the_log_probs_loss_and_gradients():
    """log_softmax=False (the trainer's forward) returns the two output layers' logits and
    no log-probs; the loss computed from them, and every parameter's gradient, equal those
    of the log-probs output."""
    from speechmoe.config import LossConfig
    from speechmoe.losses import speechmoe_loss

    torch.manual_seed(0)
    model = SpeechMoE(small()).train()
    feats, lengths = torch.randn(3, 9, 24), torch.tensor([9, 7, 5])
    targets, tlen = torch.randint(1, 11, (3, 3)), torch.tensor([3, 2, 1])
    results = []
    for log_softmax in (True, False):
        torch.manual_seed(1)
        out = model(feats, lengths, log_softmax=log_softmax)
        loss, parts = speechmoe_loss(out, targets, tlen, LossConfig())
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append((out, loss, parts, grads))
    (ref, ref_loss, ref_parts, ref_grads), (out, loss, parts, grads) = results
    assert out.log_probs.numel() == 0 and out.embedding_log_probs is None
    assert ref.logits is None and ref.embedding_logits is None
    assert torch.allclose(torch.log_softmax(out.logits, -1), ref.log_probs, atol=1e-6)
    assert torch.allclose(torch.log_softmax(out.embedding_logits, -1),
                          ref.embedding_log_probs, atol=1e-6)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    assert parts["embedding_ctc"] == pytest.approx(ref_parts["embedding_ctc"], rel=1e-6)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-6)


def test_wrong_feature_dim_is_a_clear_error():
    model = SpeechMoE(small())
    with pytest.raises(ValueError, match="input_dim=24"):
        model(torch.randn(1, 5, 30), torch.tensor([5]))


def test_training_steps_reduce_the_loss():
    """A tiny MoE learns a fixed mapping: the whole loss (eq. 12) goes down."""
    from speechmoe.config import LossConfig
    from speechmoe.losses import speechmoe_loss

    torch.manual_seed(0)
    model = SpeechMoE(small())
    feats = torch.randn(4, 12, 24)
    lengths = torch.tensor([12, 12, 10, 9])
    targets = torch.randint(1, 11, (4, 3))
    tlen = torch.tensor([3, 3, 2, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = speechmoe_loss(model(feats, lengths), targets, tlen, LossConfig())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_detached_embedding_gets_no_gradient_through_the_routers():
    """detach_embedding (3M): the routers read e, but the backbone's CTC sends no gradient
    into the embedding network; without it, the routers do."""
    feats, lengths = torch.randn(2, 9, 24), torch.tensor([9, 6])
    for detach in (False, True):
        torch.manual_seed(0)
        model = SpeechMoE(small(detach_embedding=detach)).train()
        out = model(feats, lengths)
        out.log_probs.sum().backward()  # the backbone's output only, not L_e
        grads = [p.grad for p in model.embedding.parameters()]
        reached = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert reached is not detach
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in
                   (model.backbone.moe[0].router.proj.weight, model.input_layer.weight))


def test_expert_dropout_in_training_only():
    torch.manual_seed(0)
    model = SpeechMoE(small(expert_dropout=0.5))
    torch.manual_seed(0)
    plain = SpeechMoE(small())
    plain.load_state_dict(model.state_dict())  # the same parameters: dropout adds none
    feats, lengths = torch.randn(2, 9, 24), torch.tensor([9, 6])
    model.eval(), plain.eval()
    assert torch.equal(model(feats, lengths).log_probs, plain(feats, lengths).log_probs)
    model.train(), plain.train()
    assert not torch.allclose(model(feats, lengths).log_probs, plain(feats, lengths).log_probs)
