"""The whole routed model exported to TorchScript and ONNX (run by onnxruntime): the same
log-probs as torch, with any batch size and length."""

import numpy as np
import pytest
import torch

from speechmoe.config import ModelConfig
from speechmoe.inference import export_onnx, export_torchscript, inference_module
from speechmoe.model import build_model

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning",
                                        "ignore::DeprecationWarning")


def tiny(num_experts=4, embedding_layers=1, layers=2):
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=40, d_model=32, ffn_dim=64, attention_ffn_dim=64,
                      attention_heads=2, num_layers=layers, attention_every=2,
                      num_experts=num_experts, embedding_layers=embedding_layers)
    return build_model(cfg).eval(), cfg


def inputs(cfg, batch, frames, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, cfg.input_dim, generator=g)
    lengths = torch.tensor([frames] + [max(2, frames - 7 * (i + 1)) for i in range(batch - 1)])
    return x, lengths


def real_frames(log_probs, lengths):
    return np.concatenate([lp[:n] for lp, n in zip(log_probs, lengths.tolist())])


@pytest.mark.parametrize("system", ["moe", "b1"])
def test_torchscript_gives_the_torch_log_probs(system, tmp_path):
    model, cfg = tiny() if system == "moe" else tiny(num_experts=1, embedding_layers=0, layers=4)
    path = export_torchscript(model, tmp_path / "model.torchscript.pt")
    scripted = torch.jit.load(str(path))
    ref_module = inference_module(model)
    for batch, frames in ((2, 40), (3, 91), (1, 5)):
        x, lengths = inputs(cfg, batch, frames, seed=frames)
        ref = ref_module(x, lengths)[0].detach().numpy()
        got = scripted(x, lengths)[0].detach().numpy()
        np.testing.assert_allclose(real_frames(got, lengths), real_frames(ref, lengths),
                                   atol=1e-5)


def test_onnx_runs_in_onnxruntime_with_dynamic_batch_and_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, cfg = tiny()
    path = export_onnx(model, tmp_path / "model.onnx", cfg.input_dim)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref_module = inference_module(model)
    for batch, frames in ((2, 40), (3, 91), (1, 5), (5, 200)):
        x, lengths = inputs(cfg, batch, frames, seed=frames)
        ref = ref_module(x, lengths)[0].detach().numpy()
        got, out_lengths = session.run(None, {"features": x.numpy(),
                                              "lengths": lengths.numpy()})
        assert got.shape == ref.shape and out_lengths.tolist() == lengths.tolist()
        np.testing.assert_allclose(real_frames(got, lengths), real_frames(ref, lengths),
                                   atol=1e-4)


def test_onnx_graph_routes_rather_than_running_every_expert(tmp_path):
    """The exported dispatch gathers each expert's frames (NonZero), as in torch: with
    top-1 routing only one expert's matmuls touch a frame."""
    onnx = pytest.importorskip("onnx")
    model, cfg = tiny()
    path = export_onnx(model, tmp_path / "model.onnx", cfg.input_dim)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("NonZero") >= 4 * 2  # one per expert of each of the 2 MoE layers


def test_int8_onnx_quantizes_the_matmuls_and_stays_close(tmp_path):
    """quantize_onnx: int8 weights in every MatMul by a weight (none left in float; the
    attention's products of two activations stay float), the same
    dynamic batch and length, and log-probs near the float model's (the error of 8-bit
    weights and activations: small against how much a frame's log-probs differ, not an
    exact match; its effect on accuracy is measured on a trained model, RESULTS.md)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from speechmoe.inference import quantize_onnx

    model, cfg = tiny()
    path = export_onnx(model, tmp_path / "model.onnx", cfg.input_dim)
    q = quantize_onnx(path, tmp_path / "model.int8.onnx")
    assert not list(tmp_path.glob("*.tmp"))
    graph = onnx.load(str(q)).graph
    ops = [n.op_type for n in graph.node]
    weights = {i.name for i in graph.initializer}
    float_weight_matmuls = [n.name for n in graph.node
                            if n.op_type == "MatMul" and set(n.input) & weights]
    assert ops.count("MatMulInteger") >= 2 * 4 * 2 and not float_weight_matmuls
    assert ops.count("NonZero") >= 4 * 2  # still routed
    full = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    for batch, frames in ((2, 40), (3, 91)):
        x, lengths = inputs(cfg, batch, frames, seed=frames)
        feed = {"features": x.numpy(), "lengths": lengths.numpy()}
        ref, got = full.run(None, feed)[0], int8.run(None, feed)[0]
        assert got.shape == ref.shape
        ref = real_frames(ref, lengths)
        diff = np.abs(real_frames(got, lengths) - ref)
        spread = ref.std(axis=1).mean()  # how much the log-probs of a frame differ
        # 0.12 of the spread on this random model and random input (per-channel weights
        # do no better: the activations' 8 bits dominate); a wrong scale or a broken
        # graph gives errors of the order of the spread itself
        assert np.isfinite(diff).all() and diff.mean() < 0.25 * spread, (diff.mean(), spread)
