"""CTC log-posteriors of a set of cuts with stored features, batch by batch.

Used by the decoding stage (local/decode.py) and the LM comparison
(local/compare_lms.py); lhotse is imported when a sampler is made.
"""

from __future__ import annotations

from typing import Iterator

import torch

from speechmoe.data.dataset import AsrDataset
from speechmoe.data.sampling import make_sampler
from speechmoe.features import FeatureConfig


def posteriors(model, cuts, cmvn, max_duration: float, device=None,
               feature_config=None) -> Iterator[tuple[str, "object"]]:
    """Yield (cut id, (T, C) float32 numpy log-posteriors) for every readable cut, in
    duration-bucketed batches, the model on ``device`` (default: where its parameters
    are; ``feature_config``: the stored features' FeatureConfig, default plain fbank).
    A cut whose features cannot be read is left out by the dataset with a warning;
    the scoring stage then names it."""
    if device is None:
        device = next(model.parameters()).device
    dataset = AsrDataset(cmvn, feature_config=feature_config or FeatureConfig())
    sampler = make_sampler(cuts, max_duration, num_buckets=5, shuffle=False)
    with torch.no_grad():
        for batch_cuts in sampler:
            batch = dataset[batch_cuts]
            if not batch["cut_ids"]:  # every cut of the batch was unreadable
                continue
            out = model(batch["features"].to(device), batch["lengths"].to(device))
            log_probs, lengths = out.log_probs.float().cpu(), out.lengths.cpu()
            for cut_id, lp, n in zip(batch["cut_ids"], log_probs, lengths):
                yield cut_id, lp[: int(n)].numpy()
