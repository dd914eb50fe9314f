"""Checkpoints: atomic saves, safe loads, resume discovery, averaging.

Training writes them (speechmoe.train) and everything that loads a model reads them
(decoding, export, the recognizer), so they live outside both.

Files in the experiment directory:
  epoch-N.pt         written when epoch N is finished
  checkpoint-S.pt    written every `save_every_n` steps inside an epoch (S = global step)
  avg-N-K.pt         the average of epochs N-K+1 .. N that decoding and export use
Every file is written to a temporary name and renamed, so a killed run leaves
only complete checkpoints; all are loaded with torch.load(weights_only=True).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

import torch

from speechmoe.utils import atomic_torch_save, safe_torch_load

log = logging.getLogger("speechmoe")

REQUIRED_KEYS = ("model", "epoch", "step", "params", "model_config")
_EPOCH = re.compile(r"^epoch-(\d+)\.pt$")
_STEP = re.compile(r"^checkpoint-(\d+)\.pt$")


def save_checkpoint(path: Path, **state) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a speechmoe checkpoint safely; a foreign or damaged file is a clear error.

    mmap=True maps tensors lazily (cheap when only the metadata is needed).
    """
    ckpt = safe_torch_load(path, what="checkpoint", mmap=mmap)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        have = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a speechmoe checkpoint (expected keys "
                         f"{list(REQUIRED_KEYS)}, found {have})")
    return ckpt


def _numbered(exp_dir: Path, glob: str, pattern: re.Pattern) -> dict[int, Path]:
    found = {}
    for p in Path(exp_dir).glob(glob):
        m = pattern.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def epoch_checkpoints(exp_dir: Path) -> dict[int, Path]:
    """{epoch: path} of the epoch-N.pt files, in order."""
    return _numbered(exp_dir, "epoch-*.pt", _EPOCH)


def step_checkpoints(exp_dir: Path) -> dict[int, Path]:
    """{global step: path} of the mid-epoch checkpoint-S.pt files, in order."""
    return _numbered(exp_dir, "checkpoint-*.pt", _STEP)


def latest_checkpoint(exp_dir: Path) -> Optional[Path]:
    """The checkpoint with the highest global step (epoch-end or mid-epoch).

    Files are tried newest first; one that does not load (damaged, foreign) is
    skipped with its neighbours taking its place, never resumed from.
    """
    epochs = list(epoch_checkpoints(exp_dir).values())[::-1]
    steps = list(step_checkpoints(exp_dir).items())[::-1]

    def first_loadable(paths):
        for path in paths:
            try:
                return path, int(load_checkpoint(path, mmap=True)["step"])
            except (ValueError, FileNotFoundError):
                continue
        return None, -1

    epoch_path, epoch_step = first_loadable(epochs)
    # Mid-epoch files newer than the last complete epoch, newest first.
    step_path, step_step = first_loadable([p for s, p in steps if s > epoch_step])
    return step_path if step_step > epoch_step else epoch_path


def prune_step_checkpoints(exp_dir: Path, keep: int) -> None:
    steps = step_checkpoints(exp_dir)
    for step in list(steps)[:-keep] if keep > 0 else list(steps):
        steps[step].unlink(missing_ok=True)


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the models' floating-point tensors (others from the last)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    states = [load_checkpoint(p)["model"] for p in paths]
    avg = {}
    for key, last in states[-1].items():
        if torch.is_floating_point(last):
            avg[key] = sum(s[key].double() for s in states).div(len(states)).to(last.dtype)
        else:
            avg[key] = last
    return avg


def checkpoint_for_decoding(exp_dir: Path, epoch: int, avg: int) -> Path:
    """Average epochs epoch-avg+1 .. epoch into exp_dir/avg-<epoch>-<avg>.pt (once)."""
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
