"""Benchmark: the training step of two systems side by side, on two paths.

    python -m speechmoe.bench.train_step egs/aishell2/conf/model/b1.yaml \
        egs/aishell2/conf/model/moe_8e.yaml [--device cuda] [--amp auto] [--batch-seconds 300]

For each config: one optimizer step (model forward under the path's mixed precision, the
SpeechMoE loss of eq. 12 with every term of the config, backward, gradient clipping,
AdamW) on a batch of --utterances utterances of equal length making --batch-seconds of
audio (random features and labels: the cost does not depend on the values, only on the
routing, which a random input spreads over the experts).

Each system runs on two paths, each in a process of its own (so that process-wide
settings stay apart), from the same seed and batch:

  baseline  the training step of revision 6f02136: glibc's default allocator settings, the
            memory blocks' 1-D convolutions, the per-tensor AdamW, torch's CTC over the whole
            vocabulary, --baseline-amp (none)
  new       what local/train.py does now on this machine (--step-kernels auto: a kernel
            speechmoe.train.step_kernels turns off here stays off): speechmoe.utils.tune_malloc,
            the channels-last memory kernel, the fused AdamW and a foreach gradient clipping, the CTC losses on
            each utterance's own columns (speechmoe.losses.ctc_sum) read from the logits
            without a dense log-softmax (speechmoe.losses.gathered_log_softmax), the routing
            statistics of all layers in one batch of operations, --amp (none; auto: bf16
            where the device computes it natively, speechmoe.utils.native_bf16, as the
            recipes train)

Only one process computes at a time: the steps of all four are interleaved and the
medians of --repeats compared, so machine noise hits every path alike. First every
process trains --loss-steps steps on its batch and the two paths' losses are compared
step by step (equal to rounding when both run in fp32; bf16 autocast moves them by its
own rounding, ~1e-2 relative).

Printed per system and path: step time, the part of it spent in the update (gradient
clipping and AdamW, which touch every parameter whether routed to or not), frames per
second (10 ms input frames), audio seconds per wall second, the FLOPs of one step
(counted by torch's FlopCounterMode: matrix products of forward and backward, only the
experts each frame is routed to) and the fraction they make of the device's peak,
measured in the same run as the rate of a large matrix product in the step's precision
(a practical peak, not the data sheet's). Then, last:
  speedup_vs_baseline=<system>:<baseline step / new step>,...
  forward_backward_ratio=<second / first, new path, without the update>
  step_time_ratio=<second / first, new path>: for B1 and MoE-8e the paper's "comparable
      computation cost" (target <= 1.15)
--profile FILE writes a torch.profiler breakdown of each system's new-path step (stages and
operator groups) to FILE.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import multiprocessing as mp
import statistics
import time

import torch

from speechmoe.config import load_config
from speechmoe.info import FRAMES_PER_SECOND
from speechmoe.model import build_model
from speechmoe.model.memory import set_memory_kernel
from speechmoe.train.params import AMP_DTYPES
from speechmoe.train.step_kernels import KERNELS, StepKernels, optimizer_step, sync_device
from speechmoe.utils import cpu_description, resolve_amp, resolve_device, tune_malloc

PATHS = ("baseline", "new")
BASELINE_REVISION = "6f02136"
# The changes the new path makes to the baseline's step, each a switch of its own:
SWITCHES = {
    "malloc": "glibc malloc tuning (speechmoe.utils.tune_malloc)",
    "channels_last": "the memory blocks' channels-last 2-D convolution kernel",
    "fused_update": "fused AdamW and foreach gradient clipping",
    "ctc_from_logits": "the CTC losses on each utterance's own columns, read from the logits",
    "batched_routing": "the routing statistics of all layers in one batch of operations",
}


def system_config(config: str, num_classes: int, model_overrides: dict | None = None):
    return load_config(config, overrides={
        "model": {**(model_overrides or {}), "num_classes": num_classes}})


def path_switches(path: str) -> frozenset:
    """The switches a path turns on: baseline none, new all, only:X just X, without:X all
    but X."""
    kind, _, name = path.partition(":")
    if path in PATHS:
        return frozenset(SWITCHES) if path == "new" else frozenset()
    if kind in ("only", "without") and name in SWITCHES:
        return frozenset({name}) if kind == "only" else frozenset(SWITCHES) - {name}
    raise ValueError(f"unknown path {path!r}: baseline, new, only:X or without:X with X one "
                     f"of {', '.join(SWITCHES)}")


def ablation_paths() -> list[str]:
    """--ablate: every switch on alone (against the baseline) and off alone (against new)."""
    return [*PATHS, *(f"only:{s}" for s in SWITCHES), *(f"without:{s}" for s in SWITCHES)]


def gemm_peak(device, dtype, size: int, repeats: int = 10) -> float:
    """FLOP/s of a (size x size) @ (size x size) product, the median of repeats."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 2):
        sync_device(device)
        t0 = time.perf_counter()
        a @ b
        sync_device(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / statistics.median(times)


class System:
    """A model, its optimizer and a fixed batch, ready to step on one path."""

    def __init__(self, config: str, device, amp: str, batch_seconds: float,
                 utterances: int, num_classes: int, seed: int = 0, path: str = "new",
                 model_overrides: dict | None = None, off: tuple = ()):
        torch.manual_seed(seed)
        self.cfg = system_config(config, num_classes, model_overrides)
        self.name = self.cfg.name or config
        self.device = device
        self.path = path
        self.on = path_switches(path) - set(off)  # off: kernels the training CPU turns off
        self.model = build_model(self.cfg.model).to(device).train()
        set_memory_kernel(self.model, channels_last="channels_last" in self.on)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4,
                                           fused="fused_update" in self.on)
        self.amp_name = amp
        self.amp = AMP_DTYPES[amp]
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
        self.update_seconds = 0.0

    def step(self) -> float:
        """One optimizer step; returns its loss (read after the step is timed)."""
        kernels = StepKernels(**{k: k in self.on for k in KERNELS})
        loss, self.update_seconds = optimizer_step(
            self.model, self.optimizer, (self.feats, self.lengths, self.targets,
                                         self.target_lengths),
            self.cfg.loss, kernels, self.device, self.amp, self.scaler)
        return loss

    def count_flops(self) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.step()
        return counter.get_total_flops()


# Operator groups of the profile, by aten name (the first that matches).
OP_GROUPS = [
    ("matrix products", ("mm", "addmm", "bmm", "linear", "matmul")),
    ("memory-block convolutions", ("convolution", "mkldnn_convolution", "conv")),
    ("CTC and log-softmax", ("ctc", "log_softmax")),
    ("attention", ("scaled_dot_product",)),
    ("routing and dispatch", ("argsort", "sort", "index_select", "scatter", "topk", "max",
                              "softmax", "linalg_vector_norm", "where")),
    ("optimizer", ("adam", "lerp", "addcdiv", "sqrt", "_foreach", "fused")),
    ("copies and fills", ("copy_", "fill_", "zero_", "contiguous", "_to_copy", "cat", "pad",
                          "constant_pad")),
]


def _group(op: str) -> str:
    name = op.split("::")[-1]
    for group, keys in OP_GROUPS:
        if any(k in name for k in keys):
            return group
    return "elementwise and other"


def profile_steps(system: System, steps: int = 3) -> str:
    """torch.profiler over a few steps: time per stage and per operator group (self CPU
    time; on CUDA the host's view)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            system.step()
    events = prof.key_averages()
    stages = {e.key: e.cpu_time_total / steps / 1e3 for e in events
              if e.key in ("forward", "loss", "backward", "update")}
    groups: dict[str, float] = {}
    for e in events:
        if e.key.startswith("aten::"):
            groups[_group(e.key)] = groups.get(_group(e.key), 0.0) + e.self_cpu_time_total
    total = sum(groups.values())
    lines = [f"{system.name} ({system.path} path, amp {system.amp_name}): ms per step"]
    lines += [f"  stage {k:<10} {stages.get(k, 0.0):9.1f}"
              for k in ("forward", "loss", "backward", "update")]
    for g, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"  ops   {g:<28} {t / steps / 1e3:9.1f}  {t / total:6.1%}")
    top = sorted((e for e in events if e.key.startswith("aten::")),
                 key=lambda e: -e.self_cpu_time_total)[:12]
    lines.append("  top operators: " + ", ".join(
        f"{e.key[6:]} {e.self_cpu_time_total / steps / 1e3:.1f}" for e in top))
    return "\n".join(lines)


def _worker(conn, spec: dict) -> None:
    """One system on one path, in its own process, stepping when told to."""
    if "malloc" in path_switches(spec["path"]):
        tune_malloc()
    torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    system = System(spec["config"], dev, spec["amp"], spec["batch_seconds"],
                    spec["utterances"], spec["num_classes"], path=spec["path"],
                    model_overrides=spec["model_overrides"], off=spec.get("off", ()))
    while True:
        cmd, *args = conn.recv()
        if cmd == "stop":
            break
        if cmd == "steps":  # -> [(step seconds, update seconds, loss)]
            out = []
            for _ in range(args[0]):
                sync_device(dev)
                t0 = time.perf_counter()
                loss = system.step()
                sync_device(dev)
                out.append((time.perf_counter() - t0, system.update_seconds, float(loss)))
            conn.send(out)
        elif cmd == "info":
            conn.send({"system": system.name, "params": sum(
                p.numel() for p in system.model.parameters()),
                "audio_seconds": system.audio_seconds, "input_frames": system.input_frames})
        elif cmd == "flops":
            conn.send(system.count_flops())
        elif cmd == "peak":
            dtype = system.amp or torch.float32
            conn.send(gemm_peak(dev, dtype, 8192 if dev.type == "cuda" else 2048))
        elif cmd == "profile":
            conn.send(profile_steps(system))


def run(configs: list[str], device: str = "auto", amp: str = "none",
        baseline_amp: str = "none", batch_seconds: float = 60.0, utterances: int = 12,
        repeats: int = 10, loss_steps: int = 50, threads: int = 2, num_classes: int = 1585,
        model_overrides: dict | None = None, profile: bool = False,
        ablate: bool = False, step_kernels_mode: str = "auto") -> dict:
    """Every (system, path) timed side by side; returns rows, loss agreement (each path's
    losses against the baseline's), profiles, and the kernels the new path turned off.
    The new path is what training does on this machine: the kernels
    speechmoe.train.step_kernels chooses here (step_kernels_mode, as train.py's
    --step-kernels) turned off. ablate: also every only:X and without:X path, as they are
    (only:X in the baseline's precision, without:X in the new path's)."""
    import logging

    from speechmoe.train import step_kernels

    dev = resolve_device(device)
    paths = ablation_paths() if ablate else list(PATHS)
    amps = {"baseline": resolve_amp(baseline_amp, dev), "new": resolve_amp(amp, dev)}
    for path in paths[2:]:
        amps[path] = amps["baseline" if path.startswith("only:") else "new"]
    torch.set_num_threads(threads)  # the choice is measured and cached at the step's threads
    off = {}
    for config in configs:
        chosen = step_kernels.choose(system_config(config, num_classes, model_overrides), dev,
                                     amps["new"], AMP_DTYPES[amps["new"]], batch_seconds,
                                     logging.getLogger("speechmoe"), step_kernels_mode)
        off[config] = tuple(k for k in step_kernels.KERNELS if not getattr(chosen, k))
    ctx = mp.get_context("spawn")
    workers = {}
    for config in configs:
        for path in paths:
            parent, child = ctx.Pipe()
            spec = {"config": config, "path": path, "device": str(dev), "amp": amps[path],
                    "batch_seconds": batch_seconds, "utterances": utterances,
                    "num_classes": num_classes, "threads": threads,
                    "model_overrides": model_overrides or {},
                    "off": off[config] if path == "new" else ()}
            proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
            proc.start()
            workers[config, path] = (proc, parent)

    def ask(key, *cmd):
        workers[key][1].send(cmd)
        return workers[key][1].recv()

    try:
        info = {key: ask(key, "info") for key in workers}
        losses = {key: [r[2] for r in ask(key, "steps", loss_steps)] for key in workers}
        times = {key: [] for key in workers}
        for _ in range(repeats):
            for key in workers:  # one process computes at a time
                times[key] += ask(key, "steps", 1)
        flops = {config: ask((config, "new"), "flops") for config in configs}
        peak_of = {}  # the GEMM peak of each precision, measured once
        for path in paths:
            if amps[path] not in peak_of:
                peak_of[amps[path]] = ask((configs[0], path), "peak")
        profiles = [ask((config, "new"), "profile") for config in configs] if profile else []
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=30)
    rows = []
    for (config, path), t in times.items():
        step = statistics.median(r[0] for r in t)
        f, peak, i = flops[config], peak_of[amps[path]], info[config, path]
        rows.append({"system": i["system"], "config": config, "path": path,
                     "device": str(dev), "amp": amps[path], "params": i["params"],
                     "audio_seconds": i["audio_seconds"], "step_seconds": step,
                     "update_seconds": statistics.median(r[1] for r in t),
                     "frames_per_second": i["input_frames"] / step,
                     "audio_seconds_per_second": i["audio_seconds"] / step,
                     "step_flops": f, "flops_per_second": f / step, "peak_flops": peak,
                     "fraction_of_peak": f / step / peak})
    agreement = {}
    for config in configs:
        for path in paths[1:]:
            a, b = losses[config, "baseline"], losses[config, path]
            agreement[info[config, "new"]["system"], path] = {
                "steps": len(a), "first": (a[0], b[0]), "last": (a[-1], b[-1]),
                "max_relative_difference": max(abs(x - y) / max(abs(x), 1e-12)
                                               for x, y in zip(a, b))}
    return {"rows": rows, "losses": agreement, "profiles": profiles, "off": off}


def ablation_table(rows: list[dict], losses: dict) -> list[str]:
    """Per system and switch: the step with the switch alone against the baseline's
    (speed-up > 1: it helps from the baseline) and the step without it against the new
    path's (> 1: the new path is faster with it), and the losses' largest relative
    difference from the baseline's on each."""
    by = {(r["system"], r["path"]): r["step_seconds"] for r in rows}
    lines = [f"{'system':<10} {'switch':<16} {'only s':>8} {'only gain':>10} {'without s':>10} "
             f"{'its gain':>9} {'loss diff only / without':>25}"]
    for system in dict.fromkeys(r["system"] for r in rows):
        for name in SWITCHES:
            only, without = by[system, f"only:{name}"], by[system, f"without:{name}"]
            lines.append(
                f"{system:<10} {name:<16} {only:8.3f} {by[system, 'baseline'] / only:10.3f} "
                f"{without:10.3f} {without / by[system, 'new']:9.3f} "
                f"{losses[system, f'only:{name}']['max_relative_difference']:12.1e} / "
                f"{losses[system, f'without:{name}']['max_relative_difference']:.1e}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs=2, help="two system configs, e.g. b1.yaml moe_8e.yaml")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16", "auto"], default="none",
                   help="mixed precision of the new path (local/train.py's default: none; "
                        "the recipes' amp=auto: bf16 where native)")
    p.add_argument("--baseline-amp", choices=["none", "bf16", "fp16", "auto"], default="none",
                   help="mixed precision of the baseline path (revision "
                        f"{BASELINE_REVISION}'s default: none)")
    p.add_argument("--batch-seconds", type=float, default=60.0,
                   help="seconds of audio per step")
    p.add_argument("--utterances", type=int, default=12, help="utterances per step")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--loss-steps", type=int, default=50,
                   help="steps trained on each path before timing, their losses compared")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--model-overrides", default="{}",
                   help='JSON merged into both models, e.g. \'{"d_model": 128}\'')
    p.add_argument("--profile", default="", help="write the new path's profile to this file")
    p.add_argument("--step-kernels", choices=["auto", "default"], default="auto",
                   help="the new path's kernels: auto, those training chooses on this CPU "
                        "(speechmoe.train.step_kernels, measured once and cached); default: "
                        "all of the new path's changes")
    p.add_argument("--ablate", action="store_true",
                   help="also each change of the new path on alone (against the baseline) "
                        "and off alone (against the new path): " + ", ".join(SWITCHES))
    args = p.parse_args(argv)

    out = run(args.configs, args.device, args.amp, args.baseline_amp, args.batch_seconds,
              args.utterances, args.repeats, args.loss_steps, threads=args.threads,
              model_overrides=json.loads(args.model_overrides), profile=bool(args.profile),
              ablate=args.ablate, step_kernels_mode=args.step_kernels)
    rows = out["rows"]
    dev = rows[0]["device"]
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else \
        f"{cpu_description()}, {args.threads} threads"
    print(f"torch {torch.__version__}, {name}, {rows[0]['audio_seconds']:.0f} s of audio per "
          f"step in {args.utterances} utterances, median of {args.repeats} interleaved steps; "
          "peak = measured GEMM rate in the path's precision; baseline = revision "
          f"{BASELINE_REVISION}'s step; new = training's step on this machine (kernels off: "
          + "; ".join(f"{Path(c).stem} {', '.join(o) or 'none'}" for c, o in out["off"].items())
          + f", --step-kernels {args.step_kernels})")
    print(f"{'system':<10} {'path':<9} {'amp':<5} {'params':>8} {'step s':>8} {'update s':>9} "
          f"{'frames/s':>10} {'audio s/s':>10} {'TFLOP/step':>11} {'TFLOP/s':>8} {'of peak':>8}")
    for r in rows:
        print(f"{r['system']:<10} {r['path']:<9} {r['amp']:<5} {r['params'] / 1e6:7.1f}M "
              f"{r['step_seconds']:8.3f} {r['update_seconds']:9.3f} "
              f"{r['frames_per_second']:10.0f} {r['audio_seconds_per_second']:10.1f} "
              f"{r['step_flops'] / 1e12:11.3f} {r['flops_per_second'] / 1e12:8.2f} "
              f"{r['fraction_of_peak']:8.1%}")
    for (system, path), agree in out["losses"].items():
        if path != "new":
            continue
        print(f"losses of {system}, baseline / new path over {agree['steps']} steps: first "
              f"{agree['first'][0]:.4f} / {agree['first'][1]:.4f}, last {agree['last'][0]:.4f}"
              f" / {agree['last'][1]:.4f}, largest relative difference "
              f"{agree['max_relative_difference']:.2e}")
    if args.profile:
        with open(args.profile, "w", encoding="utf-8") as f:
            f.write("\n\n".join(out["profiles"]) + "\n")
    if args.ablate:
        print("ablation: only = the baseline with one switch on, without = the new path "
              "with one switch off; gains are step-time ratios (> 1: the switch helps)")
        print("\n".join(ablation_table(rows, out["losses"])))
    by = {(r["config"], r["path"]): r for r in rows}
    speedups = [f"{by[c, 'new']['system']}:"
                f"{by[c, 'baseline']['step_seconds'] / by[c, 'new']['step_seconds']:.3f}"
                for c in args.configs]
    print("speedup_vs_baseline=" + ",".join(speedups))
    # The update (clipping and AdamW) reads and writes every parameter, routed to or not:
    # its share shrinks as the batch grows, the forward and backward passes' does not.
    a, b = (by[c, "new"] for c in args.configs)
    print("forward_backward_ratio="
          f"{(b['step_seconds'] - b['update_seconds']) / (a['step_seconds'] - a['update_seconds']):.3f}")
    print(f"step_time_ratio={b['step_seconds'] / a['step_seconds']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
