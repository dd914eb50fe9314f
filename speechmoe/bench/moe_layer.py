"""Benchmark: one top-1 MoE layer against one dense feed-forward layer of the same active size.

    python -m speechmoe.bench.moe_layer [--experts 8] [--frames 8192] [--threads 2]

Both are timed for forward + backward in the same run, interleaved so that
machine noise hits both alike; the medians are compared. The dense layer is
the same MoELayer class with one expert (LayerNorm, residual, 512 -> 1024 ->
512), so the ratio is the cost of routing and dispatch alone. The last line
printed is `moe_vs_dense_ratio=<median MoE time / median dense time>`;
the target is at most 1.15.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechmoe.model.moe import MoELayer
from speechmoe.utils import cpu_description


def _step(layer, x, mask) -> None:
    y, _ = layer(x, mask)
    y.sum().backward()


def run(experts: int = 8, frames: int = 8192, d_model: int = 512, hidden: int = 1024,
        threads: int = 2, repeats: int = 20, warmup: int = 3, seed: int = 0) -> dict:


    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    moe = MoELayer(d_model, hidden, num_experts=experts)
    dense = MoELayer(d_model, hidden, num_experts=1)
    # One utterance of `frames` frames, no padding.
    x = torch.randn(1, frames, d_model, requires_grad=True)
    mask = torch.ones(1, frames, dtype=torch.bool)

    with torch.no_grad():
        _, routing = moe(x, mask)
    counts = routing.counts.tolist()

    times = {"moe": [], "dense": []}
    for i in range(warmup + repeats):
        for name, layer in (("moe", moe), ("dense", dense)):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            t0 = time.perf_counter()
            _step(layer, x, mask)
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(elapsed)
    moe_t = statistics.median(times["moe"])
    dense_t = statistics.median(times["dense"])
    return {"experts": experts, "frames": frames, "d_model": d_model, "hidden": hidden,
            "threads": threads, "repeats": repeats, "frames_per_expert": counts,
            "moe_median_s": moe_t, "dense_median_s": dense_t, "ratio": moe_t / dense_t}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--frames", type=int, default=8192)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    r = run(args.experts, args.frames, args.d_model, args.hidden, args.threads, args.repeats)

    print(f"torch {torch.__version__}, {cpu_description()}, fp32, {r['threads']} threads, "
          f"{r['frames']} frames, "
          f"{r['d_model']} -> {r['hidden']} -> {r['d_model']}, forward + backward, "
          f"median of {r['repeats']} interleaved runs")
    print(f"frames per expert: {r['frames_per_expert']}")
    print(f"{'moe (%d experts, top-1)' % r['experts']:<24} {r['moe_median_s'] * 1e3:8.1f} ms")
    print(f"{'dense (1 expert)':<24} {r['dense_median_s'] * 1e3:8.1f} ms")
    print(f"moe_vs_dense_ratio={r['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
