"""Small shared helpers: atomic writes, safe loading of torch files, the device to run on."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from speechmoe.faults import maybe_kill


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through a fresh name beside ``path``, fsync, then rename.

    A process killed at any point leaves either the old file or the new one,
    never a half-written file under `path`.
    """
    import torch

    path = Path(path)
    with atomic_path(path, sync=True) as tmp:
        torch.save(obj, tmp)
        maybe_kill("save", path.name)


def str2bool(text: str) -> bool:
    """A command-line boolean (true/false, 1/0, yes/no), for argparse's ``type``."""
    import argparse

    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def temp_name(path: Path, keep_suffix: bool = False) -> Path:
    """A fresh name beside ``path`` (created with the usual umask, unlike mkstemp's 0600);
    keep_suffix: ending in path's suffixes, for writers that choose the format by them
    (lhotse's .jsonl.gz, soundfile's .wav)."""
    import uuid

    tail = "".join(path.suffixes) if keep_suffix else ""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{tail}")


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False,
                sync: bool = False) -> Iterator[Path]:
    """A fresh path beside ``path`` for the block to write; renamed onto ``path`` when the
    block ends, removed when it raises, so that ``path`` is never half written. The
    directory is created. sync: fsync the file before the rename (survives a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, keep_suffix)
    try:
        yield tmp
        if sync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """An empty directory <path>.tmp for the block to fill; it replaces ``path`` when the
    block ends and is removed when it raises (a directory cannot be renamed over another:
    the old one is removed just before)."""
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a fresh name beside it, fsync, then rename."""
    with atomic_path(path, sync=True) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file through a fresh name beside it, fsync, then rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256(*paths: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of the files' bytes, one after the other."""
    import hashlib

    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    return h.hexdigest()


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


def tune_malloc() -> bool:
    """Let glibc keep freed memory for reuse instead of giving it back to the OS.

    By default glibc serves every allocation above 128 KiB (most activations) with a fresh
    mmap and unmaps it on free, so each training step page-faults its whole working set in
    again, and trims the heap whenever it shrinks. Measured on the embedded recipe's CPU
    (speechmoe.bench.train_step): the routed models, whose expert blocks change size every
    step, ran up to 1.5x slower for it. Raising the mmap threshold to glibc's maximum
    (32 MiB) and disabling trimming keeps the pages mapped. Process-wide, for allocations
    made afterwards; True when set (glibc), False elsewhere (another C library: nothing
    changes)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    return all(mallopt(opt, value) == 1 for opt, value in (
        (m_mmap_threshold, 32 * 2**20), (m_trim_threshold, 2**31 - 1),
        (m_top_pad, 64 * 2**20)))


def cpu_description() -> str:
    """This CPU as timings should name it: model, family/model numbers, and the flags that
    decide the training step's speed (AVX-512, native bf16), e.g. "AMD EPYC (family 25
    model 1): avx2 fma, no avx512f, no native bf16"."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
        if not line.strip() and fields:
            break  # the first processor's block
    flags = set(fields.get("flags", "").split())
    name = fields.get("model name", platform.machine())
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    vector = " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "no avx2"
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{name}: {vector}" + ("" if "avx512f" in flags else ", no avx512f")
            + (f", native bf16 ({' '.join(bf16)})" if bf16 else ", no native bf16"))


def device_description(device) -> str:
    """A device as a timing should name it: "cuda:0 (NVIDIA H100 ...)", or "cpu (" +
    cpu_description() + ")"."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"{dev} ({cpu_description()})" if dev.type == "cpu" else str(dev)


def native_bf16(device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA GPU with bf16
    (Ampere and later), or a CPU with AVX512-BF16 or AMX (where bf16 autocast roughly
    halves a step's matrix products; elsewhere the CPU emulates it, slower than fp32)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device) -> str:
    """--amp auto: bf16 where the device computes it natively (native_bf16), else none;
    any other value as given."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "none"
