"""CTC log-posteriors of a set of cuts with stored features, batch by batch.

Used by the decoding stage (local/decode.py) and the LM comparison
(local/compare_lms.py); lhotse is imported when a sampler is made.

A cut longer than one long-form window (speechmoe.longform, 20 s by default: longer than
the utterances a model trains on) is not run through the network in one piece, where its
self-attention would look at minutes of frames it never learnt to: it goes alone, in
overlapping windows of its feature frames, of which the middle parts are kept (the same
windows the recognizer uses on audio), and its log-posteriors are those windows' joined.
There is no second pass per segment here (the recognizer's, speechmoe.longform): on a
recording of many sentences the joined windows read worse than its segments
(docs/using-a-model.md, long recordings).
"""

from __future__ import annotations

from typing import Iterator

import torch

from speechmoe.data.dataset import AsrDataset
from speechmoe.data.sampling import make_sampler
from speechmoe.features import FeatureConfig
from speechmoe.longform import LongFormConfig, WindowPlan, stream_log_probs


def frame_plan(config: LongFormConfig, frame_seconds: float) -> WindowPlan:
    """The long-form windows in model-input frames (one frame per output frame): the
    recognizer's plan with one "sample" per frame."""
    return WindowPlan.make(config.check(), 1.0 / frame_seconds, frame_seconds)


def posteriors(model, cuts, cmvn, max_duration: float, device=None,
               feature_config=None, long_form: LongFormConfig | None = None
               ) -> Iterator[tuple[str, "object"]]:
    """Yield (cut id, (T, C) float32 numpy log-posteriors) for every readable cut, in
    duration-bucketed batches, the model on ``device`` (default: where its parameters
    are; ``feature_config``: the stored features' FeatureConfig, default plain fbank).
    Cuts longer than ``long_form``'s window come last, each in windows (module doc).
    A cut whose features cannot be read is left out by the dataset with a warning;
    the scoring stage then names it."""
    import numpy as np

    if device is None:
        device = next(model.parameters()).device
    feature_config = feature_config or FeatureConfig()
    long_form = long_form or LongFormConfig()
    dataset = AsrDataset(cmvn, feature_config=feature_config)
    short = cuts.filter(lambda c: not long_form.is_long(c.duration))
    long_ids = [c.id for c in cuts if long_form.is_long(c.duration)]
    with torch.no_grad():
        if len(long_ids) < len(cuts):
            for batch_cuts in make_sampler(short, max_duration, num_buckets=5, shuffle=False):
                batch = dataset[batch_cuts]
                if not batch["cut_ids"]:  # every cut of the batch was unreadable
                    continue
                out = model(batch["features"].to(device), batch["lengths"].to(device))
                log_probs, lengths = out.log_probs.float().cpu(), out.lengths.cpu()
                for cut_id, lp, n in zip(batch["cut_ids"], log_probs, lengths):
                    yield cut_id, lp[: int(n)].numpy()
        if not long_ids:
            return
        frame_seconds = feature_config.frame_shift_ms / 1000 * feature_config.subsample
        plan = frame_plan(long_form, frame_seconds)

        def network(x):
            out = model(x[None].to(device), torch.tensor([len(x)], device=device))
            return out.log_probs[0].float().cpu().numpy()

        for cut_id in long_ids:
            batch = dataset[cuts.subset(cut_ids=[cut_id])]
            if not batch["cut_ids"]:
                continue
            feats = batch["features"][0, : int(batch["lengths"][0])]
            yield cut_id, np.concatenate(list(stream_log_probs(
                lambda a, b: feats[a:b], len(feats), plan, network)))
