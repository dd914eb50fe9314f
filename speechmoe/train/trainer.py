"""The training loop: SpeechMoE losses, checkpoints, resume, TensorBoard, routing statistics.

One entry point, `train(params)`. Rerunning the same command resumes from the
newest complete checkpoint in the experiment dir (epoch-end or mid-epoch), the
sampler included, so a killed run loses at most `save_every_n` steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch

from speechmoe.checkpoint import latest_checkpoint, load_checkpoint, prune_step_checkpoints, \
    save_checkpoint
from speechmoe.config import ModelConfig
from speechmoe.data.augment import SpecAugment
from speechmoe.data.dataset import AsrDataset, filter_trainable
from speechmoe.data.sampling import make_loader, make_sampler, resolve_num_workers
from speechmoe.errors import NonFiniteLossError  # noqa: F401  (raised here; tests name it)
from speechmoe.faults import maybe_kill
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.lang.tokenizer import LexiconTokenizer
from speechmoe.logs import setup_logger
from speechmoe.losses import speechmoe_loss
from speechmoe.model import build_model
from speechmoe.model.memory import set_memory_kernel
from speechmoe.model.moe import freeze_routing
from speechmoe.model.upcycle import upcycle
from speechmoe.train.distributed import all_reduce_sum, barrier, cleanup, init_distributed
from speechmoe.train import rerun, step_kernels
from speechmoe.train.distill import add_distillation, load_teacher
from speechmoe.train.params import AMP_DTYPES, TrainParams, build_system, check_params, \
    seed_everything
from speechmoe.train.routing_stats import RoutingTracker
from speechmoe.train.schedule import lr_lambda, warmup_warning
from speechmoe.train.validate import RoutingChurn, validate
from speechmoe.utils import device_description, resolve_amp, sha256, tune_malloc

log = logging.getLogger("speechmoe")


class Trainer:
    """One training run: set-up and resume, epochs of steps, validation, checkpoints.

    Under torchrun each rank holds one Trainer; rank 0 alone writes the log file,
    TensorBoard, the per-step loss log and the checkpoints, and runs validation.
    """

    def __init__(self, params: TrainParams):
        from lhotse import CutSet
        from torch.utils.tensorboard import SummaryWriter

        check_params(params)
        self.params = params
        malloc_tuned = tune_malloc()
        self.dist = init_distributed(params.device)
        self.exp_dir = exp_dir = Path(params.exp_dir)
        inputs = [params.model_config, params.cmvn, params.dev_cuts, *params.train_cuts,
                  *([params.init_from] if params.init_from else []),
                  *([params.teacher, params.teacher_cmvn, *params.teacher_cuts]
                    if params.teacher else [])]
        for path in inputs:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: not found (run the earlier stages first)")
        moved = rerun.start_over(params, inputs, self.dist)
        exp_dir.mkdir(parents=True, exist_ok=True)
        self.log = setup_logger(exp_dir / "log" / "train.log") if self.dist.is_main else \
            setup_logger(None, level=logging.ERROR)  # rank 0 reports for everyone
        # params.json's history entry for this run, if any (set by rerun.py)
        self.history_event = rerun.started_over(self.log, exp_dir, moved) if moved else None

        tokenizer = LexiconTokenizer(params.lang_dir)
        feat_cfg = FeatureConfig.for_cmvn(params.cmvn)
        self.system = system = build_system(params, tokenizer.vocab_size, feat_cfg)
        if self.dist.is_main:
            for stale in exp_dir.glob(".*.pt.*.tmp"):  # a save killed before its rename
                self.log.warning("removing %s, left by a run killed while saving", stale)
                stale.unlink()
        barrier(self.dist)

        seed_everything(params.seed)
        self.model = build_model(system.model).to(self.dist.device)
        self.embedding_loss = system.loss.gamma > 0
        self.loss_config = system.loss  # gamma set to 0 once the routing is frozen
        if self.model.embedding is not None and not self.embedding_loss:
            # gamma 0: the embedding network learns through the routers alone; its CTC
            # head would get no gradient (DDP would stop on it), so it is frozen.
            self.model.embedding.ctc_head.requires_grad_(False)
            self.log.info("loss.gamma is 0: the embedding network's CTC head is not trained")
        self.amp = resolve_amp(params.amp, self.dist.device)
        self.amp_dtype = AMP_DTYPES[self.amp]
        self.kernels = step_kernels.choose(  # one choice for all ranks: the defaults under DDP
            system, self.dist.device, self.amp, self.amp_dtype, params.max_duration, self.log,
            params.step_kernels if not self.dist.enabled else "default")
        set_memory_kernel(self.model, channels_last=self.kernels.channels_last)
        # fused: one kernel over all parameters instead of ~10 per tensor (the update of
        # MoE-8e at the tables' scale took 28 ms, 14 ms fused)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=params.lr,
                                           weight_decay=params.weight_decay,
                                           fused=self.kernels.fused_update)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(params.warmup_steps))
        self.scaler = torch.amp.GradScaler(self.dist.device.type) \
            if self.amp == "fp16" else None
        self.log.info("training on %s, mixed precision %s%s; glibc malloc tuned: %s",
                      device_description(self.dist.device), self.amp,
                      f" (--amp {params.amp})" if params.amp != self.amp else "", malloc_tuned)
        # The current epoch's wall seconds and hours of audio done by earlier processes:
        # carried through a mid-epoch checkpoint, so that a resumed epoch reports its whole
        # time. `epoch_resumed`: None, "carried", or "partial" (an older checkpoint without
        # them: the epoch's numbers then cover only the part after the resume).
        self.epoch_carried, self.epoch_hours, self.epoch_resumed = 0.0, 0.0, None
        self.epoch_t0 = time.time()
        # the teacher's content, not its path, is what a resume must find again
        self.teacher_sha256 = sha256(params.teacher) if params.teacher else None
        self.start_epoch, self.step, sampler_state = self._restore()
        self.maybe_freeze_routing()
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # No find_unused_parameters: the dispatch runs every expert, an idle one on
            # zero frames, so every parameter gets a (possibly zero) gradient each step.
            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.dist.device.index]
                if self.dist.device.type == "cuda" else None)
        else:
            self.ddp = self.model
        num_params = sum(p.numel() for p in self.model.parameters())
        self.log.info("model %s: %.2fM parameters, %d classes, %d process(es) on %s, config %s",
                      system.name, num_params / 1e6, system.model.num_classes,
                      self.dist.world_size, self.dist.device, json.dumps(system.to_dict()))
        if self.dist.is_main:
            rerun.write_params_json(self)

        train_cuts = CutSet.from_files(params.train_cuts) if len(params.train_cuts) > 1 \
            else CutSet.from_file(params.train_cuts[0])
        train_cuts, _ = filter_trainable(train_cuts.to_eager(), tokenizer, feat_cfg, "train")
        if len(train_cuts) == 0:
            raise ValueError("no trainable utterance left in " + ", ".join(params.train_cuts))
        cmvn = GlobalCMVN.load(params.cmvn, feat_cfg)
        spec = SpecAugment(params.spec_freq_masks, params.spec_freq_width,
                           params.spec_time_masks, params.spec_time_width,
                           params.spec_time_fraction) if params.spec_augment else None
        self.teacher, teacher_inputs = load_teacher(params, train_cuts, tokenizer, feat_cfg,
                                                    self.dist.device, self.log)
        dataset = AsrDataset(cmvn=cmvn, tokenizer=tokenizer, feature_config=feat_cfg,
                             spec_augment=spec, teacher=teacher_inputs)
        dev_dataset = AsrDataset(cmvn=cmvn, tokenizer=tokenizer, feature_config=feat_cfg)
        self.log.info("features: %s; SpecAugment: %s", json.dumps(feat_cfg.to_dict()),
                      spec or "off")
        self.sampler = make_sampler(train_cuts, params.max_duration, params.num_buckets, True,
                                    params.seed, self.dist.world_size, self.dist.rank)
        num_workers = resolve_num_workers(params.num_workers, self.dist.device)
        self.log.info("data loading: %s worker process(es)", num_workers or "no")
        self.loader = make_loader(self.sampler, dataset, num_workers)
        self.sampler_state = sampler_state
        self.total_hours = sum(c.duration for c in train_cuts) / 3600
        self.dev_loader = None
        if self.dist.is_main:
            dev_cuts, _ = filter_trainable(CutSet.from_file(params.dev_cuts).to_eager(),
                                           tokenizer, feat_cfg, "dev")
            self.dev_loader = make_loader(
                make_sampler(dev_cuts, params.max_duration, params.num_buckets, False),
                dev_dataset, num_workers)
            self.writer = SummaryWriter(str(exp_dir / "tensorboard"))
            # Per-step losses, appended across resumes (a resumed run continues the sequence).
            self.losses_log = (exp_dir / "log" / "losses.jsonl").open("a", encoding="utf-8")
            # Machine-readable records for reports (local/tables.py): one line per epoch
            # (time, dev loss) and per --log-interval (routing statistics per MoE layer).
            self.epochs_log = exp_dir / "log" / "epochs.jsonl"
            self.routing_log = exp_dir / "log" / "routing.jsonl"
        self.reduce = all_reduce_sum if self.dist.enabled else None
        self.batches_log = (exp_dir / "log" / f"batches.rank{self.dist.rank}.jsonl").open(
            "a", encoding="utf-8") if params.log_batches else None
        self.tracker = RoutingTracker()
        self.churn = RoutingChurn()
        self.bad_in_a_row = self.skipped = 0

    def maybe_freeze_routing(self) -> None:
        """--freeze-routing-after N: at update N (or on resuming past it)."""
        n = self.params.freeze_routing_after
        if n and self.step >= n and not getattr(self, "routing_frozen", False):
            if self.dist.enabled:
                raise ValueError("--freeze-routing-after is not supported with several "
                                 "processes (DDP expects every parameter's gradient)")
            self.routing_frozen = True
            self.log.info("update %d: routing frozen (%d router and embedding-network "
                          "parameters)", self.step, freeze_routing(self.model))
            if self.embedding_loss:  # L_e now has no gradient: no longer computed
                self.embedding_loss = False
                self.loss_config = dataclasses.replace(self.system.loss, gamma=0.0)
                self.log.info("L_e (gradient-free now) is no longer computed or logged")

    def _restore(self) -> tuple[int, int, Optional[dict]]:
        """(first epoch, global step, sampler state) from the newest complete checkpoint."""
        self.resumed_from = resume = latest_checkpoint(self.exp_dir)
        if resume is None:
            if self.params.init_from:
                self._init_from(Path(self.params.init_from))
            return 1, 0, None
        ckpt = load_checkpoint(resume)
        changed, other = rerun.check_resume(self, resume, ckpt)  # or refused
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"])
        if self.scaler is not None and ckpt.get("grad_scaler"):
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        epoch_done = ckpt.get("epoch_done", True)
        start_epoch = int(ckpt["epoch"]) + (1 if epoch_done else 0)
        if not epoch_done:
            self.epoch_resumed = "carried" if "epoch_seconds" in ckpt else "partial"
            self.epoch_carried = float(ckpt.get("epoch_seconds", 0.0))
            self.epoch_hours = float(ckpt.get("epoch_hours", 0.0))
        self.log.info("resuming from %s (epoch %d, step %d%s)", resume, start_epoch, ckpt["step"],
                      {None: "", "carried": f", {self.epoch_carried:.1f} s of the epoch done",
                       "partial": ", the epoch's time so far not recorded"}[self.epoch_resumed])
        return start_epoch, int(ckpt["step"]), rerun.resumed(
            self, resume, ckpt, changed, other, None if epoch_done else ckpt["sampler"])

    def _init_from(self, path: Path) -> None:
        """A fresh run's weights from a dense checkpoint (upcycling); its updates are
        recorded in <exp-dir>/init_from.json, for comparisons that count them."""
        ckpt = load_checkpoint(path)
        base_cfg = ModelConfig(**ckpt["model_config"]["model"])
        report = upcycle(self.model, self.system.model, ckpt["model"], base_cfg, str(path))
        self._base_updates = int(ckpt["step"]) if self.params.budget_includes_base else 0
        self.log.info("initialised from %s (%d updates): %s", path, int(ckpt["step"]),
                      report.summary())
        if self.dist.is_main:
            (self.exp_dir / "init_from.json").write_text(json.dumps(
                {"checkpoint": str(path), "base_updates": int(ckpt["step"]),
                 "base_epoch": int(ckpt["epoch"]), "base_model": ckpt["model_config"],
                 "copied": len(report.copied), "kept": report.kept}, indent=1))

    def state(self, epoch: int, epoch_done: bool) -> dict:
        return dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(), sampler=self.sampler.state_dict(),
                    epoch=epoch, epoch_done=epoch_done, step=self.step,
                    epoch_seconds=0.0 if epoch_done else self.epoch_elapsed(),
                    epoch_hours=0.0 if epoch_done else self.epoch_hours,
                    params=self.params.to_dict(), model_config=self.system.to_dict(),
                    teacher_sha256=self.teacher_sha256, torch_rng=torch.get_rng_state(),
                    grad_scaler=self.scaler.state_dict() if self.scaler is not None else {})

    def epoch_elapsed(self) -> float:
        """Wall seconds of the current epoch, those of earlier processes included."""
        return self.epoch_carried + time.time() - self.epoch_t0

    def save(self, name: str, epoch: int, epoch_done: bool) -> Path:
        path = self.exp_dir / name
        if self.dist.is_main:
            save_checkpoint(path, **self.state(epoch, epoch_done))
        return path

    def skip_step(self, reason: str, batch: dict, epoch: int) -> None:
        """Skip a step whose loss or gradient is not finite; stop after too many in a row.

        The loss is the global one, so every rank takes the same decision.
        """
        self.bad_in_a_row += 1
        self.skipped += 1
        self.log.warning("epoch %d step %d: %s on cuts %s; step skipped (%d in a row, %d in "
                         "all)", epoch, self.step, reason, batch["cut_ids"][:4],
                         self.bad_in_a_row, self.skipped)
        if self.dist.is_main:
            self.writer.add_scalar("train/skipped_steps", self.skipped, self.step)
        if self.bad_in_a_row >= self.params.max_bad_steps:
            # The skipped steps never touched the weights: this is the last good state.
            path = self.save(f"checkpoint-{self.step}.pt", epoch, False)
            raise NonFiniteLossError(
                f"{self.bad_in_a_row} steps in a row with a non-finite loss or gradient (last: "
                f"{reason}); stopped at step {self.step}. The last good weights are in {path}. "
                "Lower --lr, check the data of the cuts named in the log, or raise "
                "--max-bad-steps.")

    def forward_loss(self, batch: dict, sync: bool = True):
        """The model (under autocast when --amp) and the loss (fp32) of one batch."""
        import contextlib

        dev = self.dist.device
        no_sync = self.ddp.no_sync() if self.dist.enabled and not sync else \
            contextlib.nullcontext()
        with no_sync:
            with torch.autocast(dev.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.ddp(batch["features"].to(dev), batch["lengths"].to(dev),
                               with_embedding_loss=self.embedding_loss,
                               log_softmax=not self.kernels.ctc_from_logits)
            loss, parts = speechmoe_loss(out, batch["targets"].to(dev),
                                         batch["target_lengths"].to(dev), self.loss_config,
                                         reduce=self.reduce, with_floats=False,
                                         compact_ctc=self.kernels.ctc_from_logits,
                                         batched_routing=self.kernels.batched_routing)
            if self.teacher is not None:
                loss, parts = add_distillation(self.teacher, batch, out, loss, parts,
                                               self.params, self.amp_dtype, self.reduce, dev)
        return out, loss, parts

    def train_step(self, batches: list[dict], epoch: int) -> Optional[tuple[float, dict]]:
        """One optimizer step over ``batches`` (--accum-grad parts; usually one).

        Each part's loss is a per-frame average over its (global, under DDP) frames;
        part k is back-propagated with weight F_k / F_1 and the summed gradient is then
        scaled by F_1 / F (F_k: its frames, F: all parts' frames), which gives the
        gradient of sum_k (F_k / F) L_k. For the CTC losses and L_s, sums over frames,
        that is exactly the loss of one batch made of all the parts. The mean importance
        loss (and the Switch balance) is not a sum over frames: each part's is computed
        over that part, as if it were a batch of its own, and weighted by its frames.
        """
        import contextlib

        self.optimizer.zero_grad(set_to_none=True)
        ref_frames = total_frames = None
        total_loss, sums, routings = 0.0, {}, []
        for k, batch in enumerate(batches):
            last = k == len(batches) - 1
            out, loss, parts = self.forward_loss(batch, sync=last)
            frames = parts.pop("frames")
            if ref_frames is None:
                ref_frames = frames
                total_frames = torch.zeros_like(frames)
            total_frames = total_frames + frames
            weight = frames / ref_frames
            if not torch.isfinite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                floats = {n: round(float(v), 4) for n, v in parts.items()}
                self.skip_step(f"non-finite loss {loss.item()} ({floats})", batch, epoch)
                return None
            # DDP averages gradients over ranks; the loss is built from global statistics
            # with this rank's share differentiable, so scaling by the world size makes the
            # average the gradient of the global loss.
            scaled = loss * weight * self.dist.world_size
            no_sync = self.ddp.no_sync() if self.dist.enabled and not last else \
                contextlib.nullcontext()
            with no_sync:
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total_loss = total_loss + loss.detach() * frames
            for n, v in parts.items():
                sums[n] = sums.get(n, 0.0) + v * frames
            routings.append(out.routing)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if len(batches) > 1:
            factor = float(ref_frames / total_frames)
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.mul_(factor)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.params.grad_clip,
            foreach=True if self.kernels.fused_update else None)
        if not torch.isfinite(grad_norm):
            if self.scaler is not None:  # fp16 overflow: the scaler lowers its scale
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.skip_step(f"non-finite gradient norm {grad_norm.item()}", batches[-1], epoch)
            return None
        self.bad_in_a_row = 0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.maybe_freeze_routing()
        for routing in routings:
            self.tracker.update(routing)
        if len(batches) == 1:
            loss_value = float(loss.detach())
            parts_out = {n: float(v) for n, v in parts.items()}
        else:
            loss_value = float(total_loss / total_frames)
            parts_out = {n: float(v / total_frames) for n, v in sums.items()}
        return loss_value, {**parts_out, "grad_norm": float(grad_norm)}

    def run(self) -> Path:
        from tqdm import tqdm

        p = self.params
        last_epoch = self.start_epoch - 1
        rerun.nothing_to_train(self)
        for epoch in range(self.start_epoch, p.num_epochs + 1):
            if self.budget_spent():
                break
            last_epoch = epoch
            self.sampler.set_epoch(epoch)
            if self.sampler_state is not None:
                # Every rank restores rank 0's state: lhotse keeps the rank itself, and the
                # number of batches to fast-forward is the same on every rank.
                self.sampler.load_state_dict(self.sampler_state)
                self.sampler_state = None
            self.epoch_t0 = time.time()
            bar = tqdm(self.loader, desc=f"epoch {epoch}", mininterval=5.0, unit="batch",
                       disable=not self.dist.is_main)
            for batches in accumulate(bar, p.accum_grad):
                if any(not b["cut_ids"] for b in batches):
                    # every cut of a batch failed to load (each named in the log already)
                    self.log.warning("epoch %d after step %d: a batch with no loadable cut "
                                     "was skipped", epoch, self.step)
                    batches = [b for b in batches if b["cut_ids"]]
                    if not batches:
                        continue
                result = self.train_step(batches, epoch)
                if result is None:
                    continue
                loss, parts = result
                if self.batches_log is not None:
                    self.batches_log.write(json.dumps({"step": self.step, "cut_ids": [
                        c for b in batches for c in b["cut_ids"]]}) + "\n")
                    self.batches_log.flush()
                self.epoch_hours += sum(float(b["lengths"].sum()) for b in batches) * 0.03 / 3600
                if self.dist.is_main:
                    self.losses_log.write(json.dumps(  # the parts and the gradient norm
                        {"epoch": epoch, "step": self.step, "loss": loss, **parts}) + "\n")
                    self.losses_log.flush()
                    bar.set_postfix(loss=f"{loss:.3f}", ctc=f"{parts['ctc']:.3f}")
                maybe_kill("step", self.step)
                if self.step % p.log_interval == 0:
                    self.log_step(epoch, loss, parts)
                if p.save_every_n and self.step % p.save_every_n == 0:
                    self.save(f"checkpoint-{self.step}.pt", epoch, False)
                    if self.dist.is_main:
                        prune_step_checkpoints(self.exp_dir, p.keep_last_n)
                if self.budget_spent():  # --max-steps: this epoch ends here
                    break
                if p.valid_every_n and self.step % p.valid_every_n == 0:
                    self.validate_mid_epoch(epoch)
            bar.close()
            seen_hours, resumed = self.epoch_hours, self.epoch_resumed
            if epoch == 1 and not resumed and self.dist.is_main and (warning := warmup_warning(
                    p.warmup_steps, self.step, p.num_epochs, p.max_steps)):
                self.log.warning(warning)
            if self.dist.is_main:
                valid = validate(self.model, self.dev_loader, self.system, self.dist.device)
                seconds = self.epoch_elapsed()
                self.log.info("epoch %d done in %.0f s (%.2f h of %.2f h seen by rank 0): dev "
                              "ctc %.4f, dev greedy TER %.2f%%", epoch, seconds,
                              seen_hours, self.total_hours, valid["ctc"], valid["ter"])
                dev_routing = valid["routing"].log(self.log, self.writer, self.step,
                                                   prefix="dev")
                churn = self.churn.update(valid["experts"])
                append_jsonl(self.epochs_log, {
                    "epoch": epoch, "step": self.step, "seconds": round(seconds, 1),
                    "hours": round(seen_hours, 3), "dev_ctc": valid["ctc"],
                    "dev_greedy_ter": valid["ter"], "dev_routing": dev_routing,
                    **({"dev_routing_churn": churn} if churn is not None else {}),
                    **({"resumed": resumed} if resumed else {}),
                    **({"max_steps_reached": True} if self.budget_spent() else {})})
                self.writer.add_scalar("dev/ctc", valid["ctc"], self.step)
                self.writer.add_scalar("dev/greedy_ter", valid["ter"], self.step)
                self.save(f"epoch-{epoch}.pt", epoch, True)
                prune_step_checkpoints(self.exp_dir, 0)  # the epoch checkpoint supersedes them
            self.epoch_carried, self.epoch_hours, self.epoch_resumed = 0.0, 0.0, None
            barrier(self.dist)
        if self.dist.is_main:
            self.writer.close()
            self.losses_log.close()
        if self.batches_log is not None:
            self.batches_log.close()
        self.log.info("training finished: %d epochs, %d steps%s", last_epoch, self.step,
                      f" (--max-steps {p.max_steps})" if self.budget_spent() else "")
        return self.exp_dir

    def validate_mid_epoch(self, epoch: int) -> None:
        """Dev CTC and greedy TER at this step (--valid-every-n), one line of log/valid.jsonl:
        a dev curve with points at the same updates whatever the epoch length."""
        if not self.dist.is_main:
            return
        valid = validate(self.model, self.dev_loader, self.system, self.dist.device)
        self.log.info("epoch %d step %d: dev ctc %.4f, dev greedy TER %.2f%%", epoch,
                      self.step, valid["ctc"], valid["ter"])
        churn = self.churn.update(valid["experts"])
        append_jsonl(self.exp_dir / "log" / "valid.jsonl", {
            "epoch": epoch, "step": self.step, "dev_ctc": valid["ctc"],
            "dev_greedy_ter": valid["ter"],
            **({"dev_routing_churn": churn} if churn is not None else {})})
        self.writer.add_scalar("dev/ctc", valid["ctc"], self.step)
        self.writer.add_scalar("dev/greedy_ter", valid["ter"], self.step)

    def budget_spent(self) -> bool:
        return self.params.max_steps > 0 and \
            self.step + self.base_updates() >= self.params.max_steps

    def base_updates(self) -> int:
        """The upcycling base's updates, where --max-steps counts them (init_from.json)."""
        if not (self.params.budget_includes_base and self.params.init_from):
            return 0
        if not hasattr(self, "_base_updates"):
            path = self.exp_dir / "init_from.json"
            self._base_updates = int(json.loads(path.read_text())["base_updates"]) \
                if path.is_file() else 0
        return self._base_updates

    def log_step(self, epoch: int, loss: float, parts: dict) -> None:
        """Loss, learning rate and routing statistics (summed over ranks) every log_interval."""
        if self.reduce is not None:
            self.tracker.all_reduce(self.reduce)
        if self.dist.is_main:
            lr = self.scheduler.get_last_lr()[0]
            grad_norm = parts.pop("grad_norm")
            self.log.info("epoch %d step %d: loss %.4f %s lr %.2e grad-norm %.2f", epoch,
                          self.step, loss, json.dumps({k: round(v, 4) for k, v in
                                                       parts.items()}), lr, grad_norm)
            w = self.writer
            w.add_scalar("train/loss", loss, self.step)
            for k, v in parts.items():
                w.add_scalar(f"train/{k}", v, self.step)
            w.add_scalar("train/lr", lr, self.step)
            w.add_scalar("train/grad_norm", grad_norm, self.step)
            summary = self.tracker.log(self.log, w, self.step)
            if summary:
                append_jsonl(self.routing_log, {"epoch": epoch, "step": self.step,
                                                "layers": summary})
        self.tracker.reset()


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def accumulate(batches, n: int):
    """Groups of n consecutive batches (the last group may be shorter)."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def train(params: TrainParams) -> Path:
    trainer = Trainer(params)
    try:
        return trainer.run()
    finally:
        cleanup(trainer.dist)
