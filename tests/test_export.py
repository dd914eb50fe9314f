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
