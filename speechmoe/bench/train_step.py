"""Benchmark: the training step of two systems side by side (the paper's "comparable cost").

    python -m speechmoe.bench.train_step egs/aishell2/conf/model/b1.yaml \
        egs/aishell2/conf/model/moe_8e.yaml [--device cuda] [--amp bf16] [--batch-seconds 300]

For each config: one optimizer step (model forward under --amp, the SpeechMoE loss of
eq. 12 with every term of the config, backward, gradient clipping, AdamW) on a batch of
--utterances utterances of equal length making --batch-seconds of audio (random features
and labels: the cost does not depend on the values, only on the routing, which a random
input spreads over the experts). The steps of the two systems are interleaved and the
medians of --repeats compared, so machine noise hits both alike.

Printed per system: step time, the part of it spent in the update (gradient clipping and
AdamW, which touch every parameter whether routed to or not), frames per second (10 ms input frames), audio seconds per
wall second, the FLOPs of one step (counted by torch's FlopCounterMode on that step:
matrix products of forward and backward, only the experts each frame is routed to) and
the fraction they make of the device's peak, measured in the same run as the rate of a
large matrix product in the step's precision (a practical peak, not the data sheet's).
Then `forward_backward_ratio=` (the step without the update) and, last,
`step_time_ratio=<second / first>`: for B1 and MoE-8e the paper's "comparable
computation cost" (target <= 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechmoe.config import load_config
from speechmoe.info import FRAMES_PER_SECOND
from speechmoe.losses import speechmoe_loss
from speechmoe.model import build_model
from speechmoe.utils import resolve_device


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(device, dtype, size: int, repeats: int = 10) -> float:
    """FLOP/s of a (size x size) @ (size x size) product, the median of repeats."""

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / statistics.median(times)


class System:
    """A model, its optimizer and a fixed batch, ready to step."""

    def __init__(self, config: str, device, amp: str, batch_seconds: float,
                 utterances: int, num_classes: int, seed: int = 0):


        torch.manual_seed(seed)
        self.cfg = load_config(config, overrides={"model": {"num_classes": num_classes}})
        self.name = self.cfg.name or config
        self.device = device
        self.model = build_model(self.cfg.model).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        seconds = batch_seconds / utterances
        frames = round(seconds * FRAMES_PER_SECOND)
        self.audio_seconds = utterances * frames / FRAMES_PER_SECOND
        self.input_frames = self.audio_seconds * 100  # 10 ms fbank frames
        gen = torch.Generator().manual_seed(seed)
        self.feats = torch.randn(utterances, frames, self.cfg.model.input_dim,
                                 generator=gen).to(device)
        self.lengths = torch.full((utterances,), frames, device=device)
        labels = max(1, frames // 3)  # ~ one syllable per 90 ms
        self.targets = torch.randint(1, num_classes, (utterances, labels),
                                     generator=gen).to(device)
        self.target_lengths = torch.full((utterances,), labels, device=device)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                            enabled=self.amp is not None):
            out = self.model(self.feats, self.lengths,
                             with_embedding_loss=self.cfg.loss.gamma > 0)
        loss, _ = speechmoe_loss(out, self.targets, self.target_lengths, self.cfg.loss,
                                 with_floats=False)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        _sync(self.device)
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        _sync(self.device)
        self.update_seconds = time.perf_counter() - t0

    def count_flops(self) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.step()
        return counter.get_total_flops()


def run(configs: list[str], device: str = "auto", amp: str = "none",
        batch_seconds: float = 60.0, utterances: int = 12, repeats: int = 10,
        warmup: int = 3, threads: int = 2, num_classes: int = 1585) -> list[dict]:

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    systems = [System(c, dev, amp, batch_seconds, utterances, num_classes) for c in configs]
    flops = [s.count_flops() for s in systems]
    times: list[list[float]] = [[] for _ in systems]
    updates: list[list[float]] = [[] for _ in systems]
    for i in range(warmup + repeats):
        for s, t, u in zip(systems, times, updates):
            _sync(dev)
            t0 = time.perf_counter()
            s.step()
            _sync(dev)
            if i >= warmup:
                t.append(time.perf_counter() - t0)
                u.append(s.update_seconds)
    dtype = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    peak = gemm_peak(dev, dtype, 8192 if dev.type == "cuda" else 2048)
    out = []
    for s, f, t, u in zip(systems, flops, times, updates):
        step = statistics.median(t)
        out.append({"system": s.name, "device": str(dev), "amp": amp,
                    "params": sum(p.numel() for p in s.model.parameters()),
                    "audio_seconds": s.audio_seconds, "step_seconds": step,
                    "update_seconds": statistics.median(u),
                    "frames_per_second": s.input_frames / step,
                    "audio_seconds_per_second": s.audio_seconds / step,
                    "step_flops": f, "flops_per_second": f / step, "peak_flops": peak,
                    "fraction_of_peak": f / step / peak})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs=2, help="two system configs, e.g. b1.yaml moe_8e.yaml")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--batch-seconds", type=float, default=60.0,
                   help="seconds of audio per step")
    p.add_argument("--utterances", type=int, default=12, help="utterances per step")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    args = p.parse_args(argv)

    rows = run(args.configs, args.device, args.amp, args.batch_seconds, args.utterances,
               args.repeats, threads=args.threads)
    dev = rows[0]["device"]
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {name}, amp {args.amp}, {rows[0]['audio_seconds']:.0f} s "
          f"of audio per step in {args.utterances} utterances, median of {args.repeats} "
          f"interleaved steps; peak = measured GEMM rate {rows[0]['peak_flops'] / 1e12:.1f} "
          "TFLOP/s")
    print(f"{'system':<10} {'params':>8} {'step s':>8} {'update s':>9} {'frames/s':>10} "
          f"{'audio s/s':>10} {'TFLOP/step':>11} {'TFLOP/s':>8} {'of peak':>8}")
    for r in rows:
        print(f"{r['system']:<10} {r['params'] / 1e6:7.1f}M {r['step_seconds']:8.3f} "
              f"{r['update_seconds']:9.3f} "
              f"{r['frames_per_second']:10.0f} {r['audio_seconds_per_second']:10.1f} "
              f"{r['step_flops'] / 1e12:11.3f} {r['flops_per_second'] / 1e12:8.2f} "
              f"{r['fraction_of_peak']:8.1%}")
    # The update (clipping and AdamW) reads and writes every parameter, routed to or not:
    # its share shrinks as the batch grows, the forward and backward passes' does not.
    a, b = rows
    print("forward_backward_ratio="
          f"{(b['step_seconds'] - b['update_seconds']) / (a['step_seconds'] - a['update_seconds']):.3f}")
    print(f"step_time_ratio={b['step_seconds'] / a['step_seconds']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
