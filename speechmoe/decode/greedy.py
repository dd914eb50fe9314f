"""Greedy (best-path) CTC decoding: argmax per frame, collapse repeats, drop blanks."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def ctc_greedy(log_probs, lengths: Optional[Sequence[int]] = None,
               blank: int = 0) -> list[list[int]]:
    """Best-path decoding of CTC outputs.

    Args:
      log_probs: (B, T, C) or (T, C) scores (log-posteriors, posteriors or logits: only the
        argmax matters), a torch tensor or a numpy array.
      lengths: valid frames per utterance (B,); None means all T frames.
      blank: the blank id.

    Returns:
      One list of token ids per utterance: the frame-wise argmax with runs of the same id
      collapsed to one and blanks removed (so "a a <blk> a" -> [a, a]).
    """
    if hasattr(log_probs, "detach"):  # torch, without importing it here
        best = log_probs.detach().argmax(dim=-1).cpu().numpy()
    else:
        best = np.asarray(log_probs).argmax(axis=-1)
    if best.ndim == 1:
        best = best[None]
    elif best.ndim != 2:
        raise ValueError(f"expected (B, T, C) or (T, C) scores, got {best.ndim + 1} dims")
    if lengths is None:
        lengths = [best.shape[1]] * best.shape[0]
    elif hasattr(lengths, "tolist"):
        lengths = lengths.tolist()
    if len(lengths) != best.shape[0]:
        raise ValueError(f"{len(lengths)} lengths for a batch of {best.shape[0]}")
    out = []
    for row, n in zip(best, lengths):
        ids = row[: int(n)]
        if ids.size == 0:
            out.append([])
            continue
        new = np.ones(ids.shape, dtype=bool)
        new[1:] = ids[1:] != ids[:-1]
        out.append([int(i) for i in ids[new & (ids != blank)]])
    return out
