"""Benchmark: what the training batches cost before the model sees them.

    python -m speechmoe.bench.data_loading --cuts data/fbank/cuts_train.jsonl.gz \
        data/fbank/cuts_train_aug.jsonl.gz --cmvn data/fbank/cmvn.pt --lang-dir data/lang \
        [--max-duration 120] [--buckets 10 30] [--batches 60]

For each number of duration buckets, the training sampler (speechmoe.data.sampling,
shuffled as training draws it) makes --batches batches, and the dataset turns each into
the model's input (features read from storage, deltas, CMVN, stacking, padding, label
ids) in this process, one thread. Printed per bucket count: seconds per batch, the share
of the batch's frames that is padding (computed by the model and thrown away), the
utterances and audio seconds per batch. The trainer's DataLoader runs the same work in
--num-workers processes beside the training step. Run it from the recipe directory (the
manifests' feature paths are relative to it).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lhotse import CutSet

from speechmoe.data.dataset import AsrDataset
from speechmoe.data.sampling import make_sampler
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.lang.tokenizer import make_tokenizer
from speechmoe.utils import cpu_description


def measure(cuts, dataset, max_duration: float, buckets: int, batches: int,
            seed: int = 0) -> dict:
    sampler = make_sampler(cuts, max_duration, buckets, shuffle=True, seed=seed)
    times, utts, audio = [], [], []
    real = padded = 0
    for i, batch_cuts in enumerate(sampler):
        if i == batches:
            break
        t0 = time.perf_counter()
        batch = dataset[batch_cuts]
        times.append(time.perf_counter() - t0)
        lengths = batch["lengths"]
        if not len(lengths):
            raise ValueError(f"no cut of a batch could be read (e.g. {next(iter(batch_cuts)).id}): "
                             "run from the recipe directory, where the manifests' relative "
                             "feature paths resolve")
        real += int(lengths.sum())
        padded += len(lengths) * int(lengths.max())
        utts.append(len(lengths))
        audio.append(sum(c.duration for c in batch_cuts))
    if not times:
        raise ValueError("the sampler made no batch: no cuts?")
    return {"buckets": buckets, "batches": len(times),
            "seconds_per_batch": statistics.median(times),
            "padding": 1.0 - real / padded,
            "utterances_per_batch": statistics.mean(utts),
            "audio_seconds_per_batch": statistics.mean(audio)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuts", nargs="+", required=True, help="cut manifests with features")
    p.add_argument("--cmvn", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--buckets", type=int, nargs="+", default=[10, 30])
    p.add_argument("--batches", type=int, default=60)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cuts = CutSet.from_cuts(c for path in args.cuts for c in CutSet.from_file(path))
    dataset = AsrDataset(GlobalCMVN.load(args.cmvn), make_tokenizer(args.lang_dir),
                         FeatureConfig.for_cmvn(args.cmvn))
    print(f"{cpu_description()}; {len(cuts)} cuts, "
          f"{sum(c.duration for c in cuts) / 3600:.1f} h; max duration "
          f"{args.max_duration:.0f} s per batch, {args.batches} batches, one thread")
    print(f"{'buckets':>8} {'s/batch':>8} {'padding':>8} {'utts':>6} {'audio s':>8}")
    for b in args.buckets:
        r = measure(cuts, dataset, args.max_duration, b, args.batches)
        print(f"{r['buckets']:>8} {r['seconds_per_batch']:8.3f} {r['padding']:8.1%} "
              f"{r['utterances_per_batch']:6.1f} {r['audio_seconds_per_batch']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
