"""The training loop: SpeechMoE losses, checkpoints, resume, TensorBoard, routing statistics.

One entry point, `train(params)`. Rerunning the same command resumes from the
newest complete checkpoint in the experiment dir (epoch-end or mid-epoch), the
sampler included, so a killed run loses at most `save_every_n` steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
import torch

from speechmoe.config import SystemConfig, config_from_dict, load_config
from speechmoe.faults import maybe_kill
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.losses import speechmoe_loss
from speechmoe.logs import setup_logger
from speechmoe.train.checkpoint import latest_checkpoint, load_checkpoint, \
    prune_step_checkpoints, save_checkpoint
from speechmoe.train.routing_stats import RoutingTracker

log = logging.getLogger("speechmoe")


@dataclass
class TrainParams:
    exp_dir: str
    model_config: str
    lang_dir: str
    train_cuts: list[str]
    dev_cuts: str
    cmvn: str
    num_epochs: int = 10
    max_duration: float = 200.0  # seconds of audio per batch
    num_buckets: int = 10
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 500
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    seed: int = 42
    num_workers: int = 1
    log_interval: int = 50
    save_every_n: int = 200  # mid-epoch checkpoint interval (steps); 0 = epoch ends only
    keep_last_n: int = 2  # mid-epoch checkpoints kept
    max_bad_steps: int = 20  # consecutive non-finite losses before the run stops
    model_overrides: dict = field(default_factory=dict)  # e.g. {"num_layers": 2}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_lambda(warmup: int):
    """Linear warm-up to the peak, then inverse square-root decay (Noam)."""
    def f(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup, math.sqrt(warmup / step)) if warmup > 0 else 1.0
    return f


class NonFiniteLossError(RuntimeError):
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_system(params: TrainParams, vocab_size: int) -> SystemConfig:
    overrides = {"model": {**params.model_overrides, "num_classes": vocab_size}}
    return load_config(params.model_config, overrides=overrides)


def make_sampler(cuts, max_duration: float, num_buckets: int, shuffle: bool, seed: int = 0):
    """lhotse's DynamicBucketingSampler over an in-memory CutSet."""
    import warnings

    from lhotse.dataset import DynamicBucketingSampler

    with warnings.catch_warnings():  # it suggests lazy manifests; ours fit in memory
        warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
        return DynamicBucketingSampler(cuts, max_duration=max_duration, shuffle=shuffle,
                                       num_buckets=num_buckets, seed=seed, drop_last=False)


def make_loader(cuts, dataset, params: TrainParams, shuffle: bool, seed: int):
    sampler = make_sampler(cuts, params.max_duration, params.num_buckets, shuffle, seed)
    loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None,
                                         num_workers=params.num_workers,
                                         persistent_workers=False)
    return sampler, loader


@torch.no_grad()
def validate(model, loader, system: SystemConfig) -> dict:
    """Dev-set CTC loss (per frame) and greedy token error rate."""
    import kaldialign

    from speechmoe.decode.greedy import ctc_greedy

    model.eval()
    tot_loss = tot_frames = errs = ref_len = 0.0
    tracker = RoutingTracker()
    for batch in loader:
        out = model(batch["features"], batch["lengths"], with_embedding_loss=False)
        _, parts = speechmoe_loss(out, batch["targets"], batch["target_lengths"],
                                  dataclasses.replace(system.loss, gamma=0.0))
        frames = int(batch["lengths"].sum())
        tot_loss += parts["ctc"] * frames
        tot_frames += frames
        tracker.update(out.routing)
        hyps = ctc_greedy(out.log_probs, out.lengths)
        for hyp, ref, n in zip(hyps, batch["targets"], batch["target_lengths"]):
            ref = ref[:n].tolist()
            errs += kaldialign.edit_distance(ref, hyp)["total"]
            ref_len += len(ref)
    model.train()
    return {"ctc": tot_loss / max(tot_frames, 1), "ter": 100 * errs / max(ref_len, 1),
            "routing": tracker}


def train(params: TrainParams) -> Path:
    from lhotse import CutSet
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from speechmoe.data.dataset import AsrDataset, filter_trainable
    from speechmoe.lang.tokenizer import LexiconTokenizer
    from speechmoe.model import build_model

    exp_dir = Path(params.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logger(exp_dir / "log" / "train.log")
    for path in [params.model_config, params.cmvn, params.dev_cuts, *params.train_cuts]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: not found (run the earlier stages first)")

    tokenizer = LexiconTokenizer(params.lang_dir)
    system = build_system(params, tokenizer.vocab_size)
    cmvn = GlobalCMVN.load(params.cmvn)
    feat_cfg = FeatureConfig()
    if system.model.input_dim != feat_cfg.model_dim:
        raise ValueError(f"{params.model_config}: model.input_dim={system.model.input_dim} but "
                         f"the features have {feat_cfg.model_dim} dims")

    for stale in exp_dir.glob(".*.pt.*.tmp"):  # a save killed before its rename
        logger.warning("removing %s, left by a run killed while saving", stale)
        stale.unlink()
    start_epoch, step, resume = 1, 0, latest_checkpoint(exp_dir)
    seed_everything(params.seed)
    model = build_model(system.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(params.warmup_steps))
    sampler_state = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt["model_config"] != system.to_dict():
            raise ValueError(f"{resume}: was trained with another model config; use a new "
                             f"--exp-dir or the same config ({params.model_config})")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        start_epoch = int(ckpt["epoch"]) + (1 if ckpt.get("epoch_done", True) else 0)
        sampler_state = None if ckpt.get("epoch_done", True) else ckpt["sampler"]
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"])
        logger.info("resuming from %s (epoch %d, step %d)", resume, start_epoch, step)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info("model %s: %.2fM parameters, %d classes, config %s", system.name,
                num_params / 1e6, system.model.num_classes, json.dumps(system.to_dict()))
    (exp_dir / "params.json").write_text(json.dumps(
        {"train": params.to_dict(), "system": system.to_dict()}, indent=1))

    train_cuts = CutSet.from_files(params.train_cuts) if len(params.train_cuts) > 1 \
        else CutSet.from_file(params.train_cuts[0])
    train_cuts, _ = filter_trainable(train_cuts.to_eager(), tokenizer, feat_cfg, "train")
    dev_cuts, _ = filter_trainable(CutSet.from_file(params.dev_cuts).to_eager(), tokenizer,
                                   feat_cfg, "dev")
    if len(train_cuts) == 0:
        raise ValueError("no trainable utterance left in " + ", ".join(params.train_cuts))
    dataset = AsrDataset(cmvn, tokenizer, feat_cfg)
    train_sampler, train_loader = make_loader(train_cuts, dataset, params, True, params.seed)
    _, dev_loader = make_loader(dev_cuts, dataset, params, False, 0)

    writer = SummaryWriter(str(exp_dir / "tensorboard"))
    # Per-step losses, appended across resumes (a resumed run continues the sequence).
    losses_log = (exp_dir / "log" / "losses.jsonl").open("a", encoding="utf-8")
    tracker = RoutingTracker()
    model.train()
    bad_in_a_row = 0
    total_hours = sum(c.duration for c in train_cuts) / 3600

    skipped = 0

    def skip_step(reason: str, batch: dict, epoch: int) -> None:
        """Skip a step whose loss or gradient is not finite; stop after too many in a row."""
        nonlocal bad_in_a_row, skipped
        bad_in_a_row += 1
        skipped += 1
        logger.warning("epoch %d step %d: %s on cuts %s; step skipped (%d in a row, %d in all)",
                       epoch, step, reason, batch["cut_ids"][:4], bad_in_a_row, skipped)
        writer.add_scalar("train/skipped_steps", skipped, step)
        if bad_in_a_row >= params.max_bad_steps:
            # The skipped steps never touched the weights: this checkpoint is the last good state.
            path = exp_dir / f"checkpoint-{step}.pt"
            save_checkpoint(path, **state(epoch, False))
            raise NonFiniteLossError(
                f"{bad_in_a_row} steps in a row with a non-finite loss or gradient (last: "
                f"{reason}); stopped at step {step}. The last good weights are in {path}. "
                "Lower --lr, check the data of the cuts named in the log, or raise "
                "--max-bad-steps.")

    def state(epoch: int, epoch_done: bool) -> dict:
        return dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), sampler=train_sampler.state_dict(),
                    epoch=epoch, epoch_done=epoch_done, step=step, params=params.to_dict(),
                    model_config=system.to_dict(), torch_rng=torch.get_rng_state())

    for epoch in range(start_epoch, params.num_epochs + 1):
        train_sampler.set_epoch(epoch)
        if sampler_state is not None:
            train_sampler.load_state_dict(sampler_state)  # fast-forwards to where it stopped
            sampler_state = None
        t0 = time.time()
        seen_hours = 0.0
        bar = tqdm(train_loader, desc=f"epoch {epoch}", mininterval=5.0, unit="batch")
        for batch in bar:
            if not batch["cut_ids"]:
                continue  # every cut of the batch had unreadable features (logged)
            out = model(batch["features"], batch["lengths"])
            loss, parts = speechmoe_loss(out, batch["targets"], batch["target_lengths"],
                                         system.loss)
            if not torch.isfinite(loss):
                skip_step(f"non-finite loss {loss.item()} ({parts})", batch, epoch)
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            if not torch.isfinite(grad_norm):
                optimizer.zero_grad(set_to_none=True)
                skip_step(f"non-finite gradient norm {grad_norm.item()}", batch, epoch)
                continue
            bad_in_a_row = 0
            optimizer.step()
            scheduler.step()
            step += 1
            losses_log.write(json.dumps({"epoch": epoch, "step": step, "loss": loss.item(),
                                         **parts}) + "\n")
            losses_log.flush()
            maybe_kill("step", step)
            tracker.update(out.routing)
            seen_hours += float(batch["lengths"].sum()) * 0.03 / 3600
            if step % params.log_interval == 0:
                lr = scheduler.get_last_lr()[0]
                logger.info("epoch %d step %d: loss %.4f %s lr %.2e grad-norm %.2f", epoch,
                            step, loss.item(), json.dumps({k: round(v, 4) for k, v in
                                                           parts.items()}), lr, grad_norm)
                writer.add_scalar("train/loss", loss.item(), step)
                for k, v in parts.items():
                    writer.add_scalar(f"train/{k}", v, step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
                tracker.log(logger, writer, step)
                tracker.reset()
            bar.set_postfix(loss=f"{loss.item():.3f}", ctc=f"{parts['ctc']:.3f}")
            if params.save_every_n and step % params.save_every_n == 0:
                save_checkpoint(exp_dir / f"checkpoint-{step}.pt", **state(epoch, False))
                prune_step_checkpoints(exp_dir, params.keep_last_n)
        bar.close()
        valid = validate(model, dev_loader, system)
        logger.info("epoch %d done in %.0f s (%.2f h of %.2f h seen): dev ctc %.4f, dev greedy "
                    "TER %.2f%%", epoch, time.time() - t0, seen_hours, total_hours,
                    valid["ctc"], valid["ter"])
        valid["routing"].log(logger, writer, step, prefix="dev")
        writer.add_scalar("dev/ctc", valid["ctc"], step)
        writer.add_scalar("dev/greedy_ter", valid["ter"], step)
        save_checkpoint(exp_dir / f"epoch-{epoch}.pt", **state(epoch, True))
        prune_step_checkpoints(exp_dir, 0)  # the epoch checkpoint supersedes them
    writer.close()
    losses_log.close()
    logger.info("training finished: %d epochs, %d steps", params.num_epochs, step)
    return exp_dir


def load_model_for_inference(path: str | Path):
    """(model in eval mode, SystemConfig) from a checkpoint or an averaged model file."""
    from speechmoe.model import build_model

    ckpt = load_checkpoint(path)
    system = config_from_dict(ckpt["model_config"], where=str(path))
    model = build_model(system.model)
    model.load_state_dict(ckpt["model"])
    return model.eval(), system


def checkpoint_for_decoding(exp_dir: Path, epoch: int, avg: int) -> Path:
    """Average epochs epoch-avg+1 .. epoch into exp_dir/avg-<epoch>-<avg>.pt (once)."""
    from speechmoe.train.checkpoint import average_checkpoints, epoch_checkpoints

    epochs = epoch_checkpoints(exp_dir)
    if not epochs:
        raise FileNotFoundError(f"{exp_dir}: no epoch-N.pt checkpoints (train first)")
    epoch = epoch if epoch > 0 else max(epochs)
    if epoch not in epochs:
        raise FileNotFoundError(f"{exp_dir}/epoch-{epoch}.pt not found; have {sorted(epochs)}")
    chosen = [epochs[e] for e in range(max(1, epoch - avg + 1), epoch + 1) if e in epochs]
    out = exp_dir / f"avg-{epoch}-{len(chosen)}.pt"
    if not out.is_file():
        last = load_checkpoint(chosen[-1])
        save_checkpoint(out, model=average_checkpoints(chosen), epoch=last["epoch"],
                        step=last["step"], params=last["params"],
                        model_config=last["model_config"],
                        averaged=[p.name for p in chosen])
    return out
