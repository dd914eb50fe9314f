"""Using a trained model: the averaged checkpoint that decoding uses, and the model in
eval mode (the decoding stage, the LM comparison and the tests load models here; the
training loop is speechmoe.train.trainer)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("speechmoe")


def load_model_for_inference(path: str | Path):
    """(model in eval mode, SystemConfig) from a checkpoint or an averaged model file."""
    from speechmoe.config import config_from_dict
    from speechmoe.model import build_model
    from speechmoe.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    system = config_from_dict(ckpt["model_config"], where=str(path))
    model = build_model(system.model)
    model.load_state_dict(ckpt["model"])
    return model.eval(), system


def checkpoint_for_decoding(exp_dir: Path, epoch: int, avg: int) -> Path:
    """Average epochs epoch-avg+1 .. epoch into exp_dir/avg-<epoch>-<avg>.pt (once)."""
    from speechmoe.train.checkpoint import (average_checkpoints, epoch_checkpoints,
                                            load_checkpoint, save_checkpoint)

    epochs = epoch_checkpoints(exp_dir)
    if not epochs:
        raise FileNotFoundError(f"{exp_dir}: no epoch-N.pt checkpoints (train first)")
    epoch = epoch if epoch > 0 else max(epochs)
    if epoch not in epochs:
        raise FileNotFoundError(f"{exp_dir}/epoch-{epoch}.pt not found; have {sorted(epochs)}")
    chosen = [epochs[e] for e in range(max(1, epoch - avg + 1), epoch + 1) if e in epochs]
    out = exp_dir / f"avg-{epoch}-{len(chosen)}.pt"
    sources = [source_fingerprint(p) for p in chosen]
    if out.is_file():
        if load_checkpoint(out, mmap=True).get("sources") == sources:
            return out
        log.info("%s: its epoch checkpoints changed since it was averaged (retrained?): "
                 "averaging again", out)
    last = load_checkpoint(chosen[-1])
    save_checkpoint(out, model=average_checkpoints(chosen), epoch=last["epoch"],
                    step=last["step"], params=last["params"],
                    model_config=last["model_config"],
                    averaged=[p.name for p in chosen], sources=sources)
    return out


def source_fingerprint(path: Path) -> list:
    """[name, size, mtime in ns] of a checkpoint: a rewritten file changes it."""
    st = Path(path).stat()
    return [Path(path).name, st.st_size, st.st_mtime_ns]



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
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    scripted.save(str(tmp))
    tmp.replace(path)
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
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        torch.onnx.export(module, (x, lengths), str(tmp), dynamo=True, opset_version=opset,
                          dynamic_shapes=({0: batch, 1: time}, {0: batch}),
                          input_names=["features", "lengths"],
                          output_names=["log_probs", "out_lengths"], external_data=False)
    tmp.replace(path)
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
    plain = dst.with_name(dst.name + ".plain.tmp")
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        onnx.save(model, str(plain))
        del model
        quantize_dynamic(str(plain), str(tmp), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
        tmp.replace(dst)
    finally:
        plain.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return dst
