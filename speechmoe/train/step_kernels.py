"""The training step's kernels, chosen on the machine that trains.

The step has four ways of computing the same thing that are faster on some CPUs and slower
on others (speechmoe.bench.train_step --ablate measures each):

  channels_last    the memory blocks as channels-last 2-D convolutions, or 1-D ones
  fused_update     fused AdamW with a foreach gradient clipping, or per-tensor ones
  ctc_from_logits  the CTC losses read each utterance's own columns from the logits, or
                   torch's CTC over a full log-softmax
  batched_routing  the routing statistics of all layers in one batch of operations, or
                   layer by layer

On a GPU every one is on. On a CPU, those in MEASURED are timed at the start of training,
as cuDNN's benchmark mode times its convolutions: a throwaway copy of the model steps on a
batch of random features of the run's batch size with all of them on, and with each of
them off in turn, the steps interleaved, and a kernel is switched off only when that is
faster by more than MARGIN. The choice is logged with its times and cached per machine
(CPU model and flags, torch version, threads, model, precision, batch size) in
$SPEECHMOE_CACHE/step_kernels.json (default ~/.cache/speechmoe), so that it is measured
once. `--step-kernels default` skips the measurement (all on).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import torch

KERNELS = ("channels_last", "fused_update", "ctc_from_logits", "batched_routing")
# Timed at run time (the others stay on): what bench.train_step --ablate found to help one
# CPU and hurt another. On an AMD EPYC with AVX2 and no AVX-512 the channels-last kernel made
# the step 1.29x slower while the other three sped it up (egs/synth_mandarin/RESULTS.md,
# "Training speed on every CPU"); it came in with the changes that made the step 1.40-1.47x
# faster on an AMD EPYC with AVX-512 and native bf16 (not measured there one by one).
MEASURED = ("channels_last",)
MARGIN = 0.03  # off must be this much faster (relative) to be chosen


@dataclasses.dataclass(frozen=True)
class StepKernels:
    channels_last: bool = True
    fused_update: bool = True
    ctc_from_logits: bool = True
    batched_routing: bool = True

    def describe(self) -> str:
        return ", ".join(f"{k} {'on' if getattr(self, k) else 'off'}" for k in KERNELS)


def cache_file() -> Path:
    root = os.environ.get("SPEECHMOE_CACHE") or Path.home() / ".cache" / "speechmoe"
    return Path(root) / "step_kernels.json"


def machine_key(system, amp: str, batch_seconds: float) -> str:
    """What the choice depends on: the CPU, torch, the threads, the model, the precision
    and the batch size (hashed model config)."""
    from speechmoe.utils import cpu_description

    model = hashlib.sha256(json.dumps(system.to_dict(), sort_keys=True).encode()).hexdigest()
    return json.dumps({"cpu": cpu_description(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "model": model[:16], "amp": amp,
                       "batch_seconds": round(float(batch_seconds), 1)}, sort_keys=True)


class _Stepper:
    """A throwaway model and optimizer stepping on one fixed random batch with `kernels`."""

    def __init__(self, system, device, amp_dtype, kernels: StepKernels, batch_seconds: float,
                 seed: int = 0):
        from speechmoe.info import FRAMES_PER_SECOND
        from speechmoe.model import build_model
        from speechmoe.model.memory import set_memory_kernel

        torch.manual_seed(seed)
        self.system, self.kernels, self.amp_dtype, self.device = system, kernels, amp_dtype, device
        self.model = build_model(system.model).to(device).train()
        set_memory_kernel(self.model, channels_last=kernels.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-6,
                                           fused=kernels.fused_update)
        utterances = max(1, round(batch_seconds / 4))  # ~4 s utterances, as the recipes
        frames = max(8, round(batch_seconds / utterances * FRAMES_PER_SECOND))
        gen = torch.Generator().manual_seed(seed)
        self.feats = torch.randn(utterances, frames, system.model.input_dim,
                                 generator=gen).to(device)
        self.lengths = torch.full((utterances,), frames, device=device)
        labels = max(1, frames // 3)
        self.targets = torch.randint(1, system.model.num_classes, (utterances, labels),
                                     generator=gen).to(device)
        self.target_lengths = torch.full((utterances,), labels, device=device)

    def step(self) -> float:
        t0 = time.perf_counter()
        self.last_loss, _ = optimizer_step(
            self.model, self.optimizer, (self.feats, self.lengths, self.targets,
                                         self.target_lengths),
            self.system.loss, self.kernels, self.device, self.amp_dtype)
        return time.perf_counter() - t0


def optimizer_step(model, optimizer, batch, loss_config, kernels: StepKernels, device,
                   amp_dtype=None, scaler=None) -> tuple[torch.Tensor, float]:
    """One training step with these kernels on a (features, lengths, targets, target
    lengths) batch: forward (under autocast with amp_dtype), the SpeechMoE loss, backward,
    clipping at 5 and the optimizer (through the fp16 scaler if given). Returns the loss
    (detached) and the seconds of the update (clipping and optimizer). The stages are
    named for torch.profiler (forward, loss, backward, update)."""
    from torch.profiler import record_function

    from speechmoe.losses import speechmoe_loss

    feats, lengths, targets, target_lengths = batch
    optimizer.zero_grad(set_to_none=True)
    with record_function("forward"), torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        out = model(feats, lengths, with_embedding_loss=loss_config.gamma > 0,
                    log_softmax=not kernels.ctc_from_logits)
    with record_function("loss"):
        loss, _ = speechmoe_loss(out, targets, target_lengths, loss_config, with_floats=False,
                                 compact_ctc=kernels.ctc_from_logits,
                                 batched_routing=kernels.batched_routing)
    with record_function("backward"):
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
    sync_device(device)
    t0 = time.perf_counter()
    with record_function("update"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0,
                                       foreach=True if kernels.fused_update else None)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    sync_device(device)
    return loss.detach(), time.perf_counter() - t0


def sync_device(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(system, device, amp_dtype, batch_seconds: float, measured=MEASURED,
            steps: int = 3) -> dict[str, tuple[float, float]]:
    """{kernel: (median step seconds with it on, with it off)}: all on, and each of
    `measured` off alone, stepped in turn after one warm-up step each."""
    variants = {"all": StepKernels(), **{k: StepKernels(**{k: False}) for k in measured}}
    steppers = {name: _Stepper(system, device, amp_dtype, kern, batch_seconds)
                for name, kern in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for s in steppers.values():
        s.step()
    for _ in range(steps):
        for name, s in steppers.items():
            times[name].append(s.step())
    base = statistics.median(times["all"])
    return {k: (base, statistics.median(times[k])) for k in measured}


def choose(system, device, amp: str, amp_dtype, batch_seconds: float, log,
           mode: str = "auto", measured=MEASURED, steps: int = 3) -> StepKernels:
    """The kernels to train with (module doc); logs the choice and where it came from."""
    if mode not in ("auto", "default"):
        raise ValueError(f"--step-kernels {mode!r}: choose auto or default")
    device = torch.device(device)
    if mode == "default" or device.type != "cpu" or not measured:
        kernels = StepKernels()
        log.info("step kernels: %s (%s)", kernels.describe(),
                 "--step-kernels default" if mode == "default" else
                 "on a GPU" if device.type != "cpu" else "none measured")
        return kernels
    path, key = cache_file(), machine_key(system, amp, batch_seconds)
    cached = _read(path)
    if key in cached:
        kernels = StepKernels(**cached[key]["kernels"])
        log.info("step kernels: %s (measured on this machine before: %s)",
                 kernels.describe(), path)
        return kernels
    t0 = time.perf_counter()
    seconds = measure(system, device, amp_dtype, batch_seconds, measured, steps)
    off = {k for k, (on_s, off_s) in seconds.items() if off_s < on_s * (1 - MARGIN)}
    kernels = StepKernels(**{k: k not in off for k in KERNELS})
    log.info("step kernels: %s, measured here in %.0f s (median step with each on / off: "
             "%s; cached in %s)", kernels.describe(), time.perf_counter() - t0,
             ", ".join(f"{k} {a:.3f} / {b:.3f} s" for k, (a, b) in seconds.items()), path)
    cached[key] = {"kernels": dataclasses.asdict(kernels),
                   "seconds": {k: list(v) for k, v in seconds.items()}}
    _write(path, cached)
    return kernels


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict) -> None:
    from speechmoe.utils import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    except OSError:  # a read-only home: the choice is measured again next time
        pass
