"""Small shared helpers: atomic writes, safe loading of torch files, the device to run on."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from speechmoe.faults import maybe_kill


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename.

    A process killed at any point leaves either the old file or the new one,
    never a half-written file under `path`.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())  # mkstemp creates 0600
        maybe_kill("save", path.name)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def str2bool(text: str) -> bool:
    """A command-line boolean (true/false, 1/0, yes/no), for argparse's ``type``."""
    import argparse

    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def temp_name(path: Path) -> Path:
    """A fresh name beside ``path`` (created with the usual umask, unlike mkstemp's 0600)."""
    import uuid

    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a fresh name beside it, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def safe_torch_load(path: str | Path, what: str = "file", mmap: bool = False) -> Any:
    """torch.load with weights_only=True; a missing, truncated or foreign file is a clear error."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot load {what} safely (weights_only=True): {first}. "
                         "The file is truncated, corrupt, or not written by speechmoe.") from exc


def resolve_device(device: str = "auto"):
    """The torch.device a ``--device`` option names: "auto" is CUDA when there is a GPU,
    else the CPU; asking for CUDA without one is an error, not a silent fallback."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} was asked for, but CUDA is not available")
    return dev
