"""Batches of cuts: the duration-bucketed sampler and the loader over it.

Training (shuffled, one share per rank) and decoding (in order) draw their batches
here, so both see the same bucketing; lhotse keeps its samplers beside its datasets
for the same reason.
"""

from __future__ import annotations

import warnings

import torch


def make_sampler(cuts, max_duration: float, num_buckets: int, shuffle: bool, seed: int = 0,
                 world_size: int = 1, rank: int = 0):
    """lhotse's DynamicBucketingSampler over an in-memory CutSet (each rank its own batches)."""
    from lhotse.dataset import DynamicBucketingSampler

    with warnings.catch_warnings():  # it suggests lazy manifests; ours fit in memory
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        # lhotse needs at least as many cuts as buckets
        return DynamicBucketingSampler(cuts, max_duration=max_duration, shuffle=shuffle,
                                       num_buckets=max(1, min(num_buckets, len(cuts))),
                                       seed=seed, drop_last=False, world_size=world_size,
                                       rank=rank)


def make_loader(sampler, dataset, num_workers: int):
    # Persistent workers: starting a worker (and pickling the dataset to it) every epoch
    # costs more than a small epoch itself.
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None,
                                       num_workers=num_workers,
                                       persistent_workers=num_workers > 0)


def resolve_num_workers(num_workers: int, device: torch.device) -> int:
    """DataLoader workers: num_workers when >= 0, else 0 on a CPU and 1 on a GPU.

    On a CPU the step's compute threads use every core, and a worker process loading the
    next batch takes its core away from one of them mid-step; the threads then wait for
    each other at every parallel operation. Measured on the embedded recipe (2 cores,
    speechmoe.bench.recipe_step, MoE-4e in bf16, four runs): 1.2-1.8x more audio per
    second with the batches loaded in the training process between steps (~0.04 s a
    batch) than with one worker (egs/synth_mandarin/results/train_step_speedup/
    recipe_step_bench.txt). On a GPU a worker overlaps loading with the device's compute."""
    if num_workers >= 0:
        return num_workers
    return 0 if device.type == "cpu" else 1
