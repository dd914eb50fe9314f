"""Benchmark: the training step on a recipe's own batches, alone and with its data loader.

    cd egs/synth_mandarin
    python -m speechmoe.bench.recipe_step --model-config conf/model/moe_4e.yaml \
        --train-cuts data/fbank/cuts_train.jsonl.gz data/fbank/cuts_train_aug.jsonl.gz \
        --dev-cuts data/fbank/cuts_dev.jsonl.gz --cmvn data/fbank/cmvn.pt --lang-dir data/lang \
        --max-duration 120 --amp auto

speechmoe.bench.train_step times one fixed batch of equal-length utterances; a real epoch
also has the sampler's batches (many lengths, padding, up to ~80 short utterances) and the
data loader, which shares the two cores with the step. This runs local/train.py's Trainer on
the recipe's data (a scratch experiment directory, deleted afterwards) and prints, per step:

  compute only      the median step over --steps batches fetched beforehand
  with the loader   the median wall time per step of --steps steps with the loader running,
                    with --num-workers 0 (loading in the step's process) and 1 (one worker)

each with the seconds of audio per second, and the minor page faults of a step.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time

FRAME_SECONDS = 0.03  # the model's input frames (10 ms fbank, subsampled by 3)


def _trainer(args, exp_dir: str, num_workers: int):
    from speechmoe.train.params import TrainParams
    from speechmoe.train.trainer import Trainer

    return Trainer(TrainParams(
        exp_dir=exp_dir, model_config=args.model_config, lang_dir=args.lang_dir,
        train_cuts=args.train_cuts, dev_cuts=args.dev_cuts, cmvn=args.cmvn,
        max_duration=args.max_duration, amp=args.amp, save_every_n=0,
        num_workers=num_workers, seed=args.seed,
        model_overrides=json.loads(args.model_overrides)))


def _audio(batch) -> float:
    return float(batch["lengths"].sum()) * FRAME_SECONDS


def compute_only(args, exp_dir: str) -> str:
    trainer = _trainer(args, exp_dir, 0)
    it = iter(trainer.loader)
    batches = [next(it) for _ in range(args.steps + 2)]
    times, faults = [], []
    for b in batches:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        trainer.train_step([b], 1)
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    audio = sum(_audio(b) for b in batches[2:])
    shapes = " ".join(f"{b['features'].shape[0]}x{b['features'].shape[1]}" for b in batches[2:])
    return (f"compute only     median {statistics.median(times[2:]):.3f} s/step, "
            f"{audio / sum(times[2:]):.1f} s of audio per s, "
            f"{statistics.median(faults[2:]):.0f} page faults/step; batches (B x T): {shapes}")


def with_loader(args, exp_dir: str, num_workers: int) -> str:
    trainer = _trainer(args, exp_dir, num_workers)
    times, audio = [], 0.0
    t0 = time.perf_counter()
    for i, b in enumerate(trainer.loader):
        trainer.train_step([b], 1)
        t1 = time.perf_counter()
        if i >= 2:  # the first two: the worker starting, the first allocations
            times.append(t1 - t0)
            audio += _audio(b)
        t0 = t1
        if i + 1 == args.steps + 2:
            break
    return (f"with the loader  median {statistics.median(times):.3f} s/step, "
            f"{audio / sum(times):.1f} s of audio per s (num_workers {num_workers})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-config", required=True)
    p.add_argument("--train-cuts", nargs="+", required=True)
    p.add_argument("--dev-cuts", required=True)
    p.add_argument("--cmvn", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--amp", default="auto")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--model-overrides", default="{}", help="JSON merged into the model config")
    args = p.parse_args(argv)
    import torch

    from speechmoe.utils import cpu_description

    scratch = tempfile.mkdtemp(prefix="recipe_step_")
    print(f"torch {torch.__version__}, {cpu_description()}", flush=True)
    try:
        print(compute_only(args, f"{scratch}/a"), flush=True)
        for workers in (0, 1):
            print(with_loader(args, f"{scratch}/b{workers}", workers), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
