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
