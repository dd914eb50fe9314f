"""Using a trained model: the model in eval mode (the decoding stage, the LM comparison,
the recognizer and the tests load models here), and its TorchScript and ONNX exports.
The checkpoint files themselves (averaging included) are speechmoe.checkpoint."""

from __future__ import annotations

from pathlib import Path

from speechmoe.checkpoint import load_checkpoint
from speechmoe.config import config_from_dict
from speechmoe.model import build_model
from speechmoe.utils import atomic_path, temp_name


def load_model_for_inference(path: str | Path):
    """(model in eval mode, SystemConfig) from a checkpoint or an averaged model file."""
    ckpt = load_checkpoint(path)
    system = config_from_dict(ckpt["model_config"], where=str(path))
    model = build_model(system.model)
    model.load_state_dict(ckpt["model"])
    return model.eval(), system


def inference_module(model):
    """The model as (features (B, T, D), lengths (B,)) -> (log_probs (B, T, C), lengths):
    the form TorchScript, ONNX and onnxruntime take (no embedding-loss head, no routing
    statistics). The whole routed model: the embedding network and the top-1 dispatch,
    only the expert each frame is routed to running."""
    import torch

    class LogProbs(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, features: torch.Tensor, lengths: torch.Tensor):
            out = self.inner(features, lengths, False)
            return out.log_probs, out.lengths

    return LogProbs(model).eval()


def export_torchscript(model, path: Path) -> Path:
    """Script the model (TorchScript) to path; load it with torch.jit.load."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
        scripted = torch.jit.script(inference_module(model))
    with atomic_path(path) as tmp:
        scripted.save(str(tmp))
    return Path(path)


def export_onnx(model, path: Path, input_dim: int, opset: int = 18) -> Path:
    """Export to ONNX with dynamic batch and length (torch.export-based exporter)."""
    import contextlib
    import io

    import torch

    module = inference_module(model)
    x = torch.zeros(2, 23, input_dim)
    lengths = torch.tensor([23, 17])
    batch = torch.export.Dim("batch", min=1, max=1024)
    time = torch.export.Dim("time", min=2, max=100000)
    with atomic_path(path) as tmp, contextlib.redirect_stdout(io.StringIO()):
        # (the exporter prints its progress)
        torch.onnx.export(module, (x, lengths), str(tmp), dynamo=True, opset_version=opset,
                          dynamic_shapes=({0: batch, 1: time}, {0: batch}),
                          input_names=["features", "lengths"],
                          output_names=["log_probs", "out_lengths"], external_data=False)
    return Path(path)


def quantize_onnx(src: Path, dst: Path) -> Path:
    """int8 weights for an exported model: onnxruntime's dynamic quantization of every
    MatMul (weights int8 per tensor, activations quantized per batch at run time).

    The exporter's intermediate shape annotations (value_info) are dropped first: the
    quantizer re-runs ONNX shape inference, which stops on them (an annotated bound of the
    dynamic batch dimension against an inferred size); onnxruntime infers shapes itself.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    del model.graph.value_info[:]
    plain = temp_name(dst)  # the input without value_info, removed in any case
    try:
        onnx.save(model, str(plain))
        del model
        with atomic_path(dst) as tmp:
            quantize_dynamic(str(plain), str(tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"])
    finally:
        plain.unlink(missing_ok=True)
    return dst
