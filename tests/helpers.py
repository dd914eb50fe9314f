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


def recipe_env(*unset: str) -> dict:
    """The environment a recipe's run.sh runs in: this interpreter's bin first on PATH
    (path.sh finds the toolkit there), the named corpus variables (db.sh's) unset."""
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    for name in unset:
        env.pop(name, None)
    return env


def copy_recipe_tree(top: Path, *recipes: str, ignore: tuple = ()) -> Path:
    """A scratch copy of the recipe machinery under ``top``: tools/, local/ and each
    egs/<recipe> (without its data/ and exp/, nor the ``ignore`` patterns); returns top.
    Nothing is then written into the repository."""
    import shutil

    for d in ("tools", "local"):
        shutil.copytree(ROOT / d, top / d, ignore=shutil.ignore_patterns("__pycache__"))
    for name in recipes:
        shutil.copytree(ROOT / "egs" / name, top / "egs" / name,
                        ignore=shutil.ignore_patterns("data", "exp", *ignore))
    return top


def run_recipe(recipe: Path, *args, env=None):
    """./run.sh ARGS in a recipe directory, output captured."""
    import subprocess

    return subprocess.run(["./run.sh", *args], cwd=recipe, env=env or recipe_env(),
                          capture_output=True, text=True)
