"""Helpers shared by test modules (pytest puts this directory on sys.path)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """A stage script of local/ as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"local_{name}", ROOT / "local" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def count_host_syncs(fn, *args, **kwargs):
    """(fn's result, the list of data-dependent operations it ran): the calls that make
    the host wait for the device on CUDA (a value read back, a shape that depends on the
    data). Counted on any device: ops seen by a dispatch mode, plus Tensor.tolist (which
    reads CPU memory without an op)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    data_dependent = {aten._local_scalar_dense.default, aten.nonzero.default,
                      aten.masked_select.default, aten.bincount.default,
                      aten.unique_consecutive.default, aten._unique2.default,
                      aten.repeat_interleave.Tensor, aten.argwhere.default}
    events = []

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in data_dependent or (func is aten.index.Tensor and any(
                    i is not None and i.dtype == torch.bool for i in args[1])):
                events.append(str(func))
            return func(*args, **(kwargs or {}))

    original = torch.Tensor.tolist

    def tolist(self):
        events.append("Tensor.tolist")
        return original(self)

    torch.Tensor.tolist = tolist
    try:
        with Mode():
            result = fn(*args, **kwargs)
    finally:
        torch.Tensor.tolist = original
    return result, events
