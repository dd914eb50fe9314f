"""Reruns of a training command: what a resume may change, and the two explicit ways on.

Rerunning `local/train.py` resumes from the newest checkpoint of its --exp-dir. That is
right when the command is the same (a killed run goes on), and wrong when an option that
changes the updates differs: the run would silently mix two settings in one model, or
ignore the new ones. Such a resume is refused with every differing option named, unless
the user chooses one of

  --start-over true                 the experiment's files move to
                                    <exp-dir>/previous-<date>-<time>/ (nothing is deleted)
                                    and training starts from scratch
  --continue-with-new-options true  resume with the new options; the change is logged
                                    and appended to params.json's "history"

or gives the new options their own --exp-dir.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

# TrainParams fields a resumed run may change: they stop or lengthen the run, say where
# and how often it reports, or where it runs; none changes what an update does. Every
# other field (any added later included) must match the checkpoint's, or the resume is
# refused. model_config is compared by content (the model/loss config), not by path.
RESUMABLE = frozenset({
    "exp_dir", "model_config", "num_epochs", "max_steps", "budget_includes_base",
    "num_workers", "log_interval", "save_every_n", "valid_every_n", "keep_last_n",
    "max_bad_steps", "device", "log_batches", "dev_cuts", "start_over",
    "continue_with_new_options", "step_kernels"})
# Not worth a log line when they differ (the same run moved, or how this rerun was asked).
_SILENT = frozenset({"exp_dir", "model_config", "start_over", "continue_with_new_options"})

PREVIOUS_PREFIX = "previous-"


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def show(value) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "''"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if value is None or value == "":
        return "''"
    return str(value)


def same(a, b) -> bool:
    """Equal as options: 120 == 120.0, a list == the tuple of its items."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def option_changes(recorded: dict, current: dict, defaults: dict) -> tuple[dict, dict]:
    """({field: (old, new)} of the options that change the updates, {...} of the others
    worth a log line). A field the recorded options lack (written before it existed) is
    taken at its default."""
    result, other = {}, {}
    for name, new in current.items():
        old = recorded.get(name, defaults.get(name))
        if same(old, new):
            continue
        if name not in RESUMABLE:
            result[name] = (old, new)
        elif name not in _SILENT:
            other[name] = (old, new)
    return result, other


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(recorded: dict, current: dict) -> dict:
    """{dotted key: (old, new)} where two model/loss configs differ."""
    a, b = _flatten(recorded), _flatten(current)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if not same(a.get(k), b.get(k))}


def describe(changes: dict, options: bool = True, limit: int = 12) -> str:
    """'--lr 0.001 -> 0.003, --warmup-steps 1000 -> 50' (options) or 'model.x 1 -> 2'."""
    items = [f"{option_name(k) if options else k} {show(o)} -> {show(n)}"
             for k, (o, n) in changes.items()]
    if len(items) > limit:
        items = items[:limit] + [f"... ({len(changes) - limit} more)"]
    return ", ".join(items)


def refusal(exp_dir: Path, checkpoint: Path, step: int, changed: dict, config: dict,
            model_config: str) -> str:
    """The one-line error of a refused resume: what differs and the ways on."""
    where = f"{checkpoint} (step {step})"
    new_dir = ("a new --exp-dir for the new options (run.sh: --tag NAME makes "
               "$exp/<model>_NAME, or --exp-dir DIR)")
    start_over = (f"--start-over true (the experiment's files move to "
                  f"{exp_dir}/{PREVIOUS_PREFIX}<date>-<time>/, nothing is deleted, and "
                  "training starts from scratch)")
    if config:
        what = (f"{where} was trained with another model config ({describe(config, False)}"
                f"; now {model_config}")
        what += f"; options {describe(changed)})" if changed else ")"
        return (f"{what}: its weights cannot go on under another config. Use {new_dir}, "
                f"or {start_over}, or the config it was trained with")
    return (f"{exp_dir} holds a run trained with other options than these, so resuming "
            f"from {where} would mix them or ignore the new ones: {describe(changed)}. "
            f"Choose: {new_dir}; or {start_over}; or --continue-with-new-options true "
            "(resume with the new options from here on; the change is logged and kept in "
            "params.json); or the old values, to resume as before")


def move_aside(exp_dir: Path, keep: tuple = ()) -> tuple[Optional[Path], list[Path]]:
    """Move everything in exp_dir (earlier previous-* dirs and the paths in ``keep``, the
    run's own inputs, excepted) into exp_dir/previous-<date>-<time>/. Returns (that dir, or
    None when there was nothing to move; the entries kept in place)."""
    if not exp_dir.is_dir():
        return None, []
    keep_resolved = [Path(k).resolve() for k in keep if k]
    entries, kept = [], []
    for entry in sorted(exp_dir.iterdir()):
        if entry.name.startswith(PREVIOUS_PREFIX) and entry.is_dir():
            continue
        resolved = entry.resolve()
        if any(k == resolved or resolved in k.parents for k in keep_resolved):
            kept.append(entry)
        else:
            entries.append(entry)
    if not entries:
        return None, kept
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = exp_dir / f"{PREVIOUS_PREFIX}{stamp}"
    n = 2
    while dest.exists():
        dest = exp_dir / f"{PREVIOUS_PREFIX}{stamp}-{n}"
        n += 1
    dest.mkdir()
    for entry in entries:
        entry.rename(dest / entry.name)
    return dest, kept


def read_history(params_json: Path) -> list:
    """The "history" list of an experiment's params.json ([] if none or unreadable)."""
    try:
        history = json.loads(params_json.read_text()).get("history", [])
    except (OSError, ValueError, AttributeError):
        return []
    return history if isinstance(history, list) else []


def history_event(event: str, **fields) -> dict:
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "event": event, **fields}


# ------------------------------------------------------------------ the Trainer's side

def check_choice(params) -> None:
    if params.start_over and params.continue_with_new_options:
        raise ValueError("--start-over and --continue-with-new-options: choose one (start "
                         "from scratch, or resume with the new options)")


def start_over(params, inputs: list, dist) -> Optional[tuple[Optional[Path], list[Path]]]:
    """--start-over, before the log file opens in the exp dir: rank 0 moves the experiment
    aside (move_aside), keeping the run's own inputs in place; the other ranks wait. None
    without the option, and on the other ranks."""
    from speechmoe.train.distributed import barrier

    moved = move_aside(Path(params.exp_dir), keep=(*inputs, params.lang_dir)) \
        if params.start_over and dist.is_main else None
    barrier(dist)
    return moved


def started_over(log, exp_dir: Path, result) -> Optional[dict]:
    """Log what --start-over did; its params.json history event (None if nothing moved)."""
    moved, kept = result
    log.info("--start-over: %s; training from scratch%s",
             f"the experiment's files moved to {moved} (nothing deleted)" if moved
             else f"nothing to move aside in {exp_dir}",
             f" ({', '.join(p.name for p in kept)} kept in place: inputs of this run)"
             if kept else "")
    return history_event("start-over", previous=moved.name) if moved else None


def check_resume(trainer, resume: Path, ckpt: dict) -> tuple[dict, dict]:
    """Refuse to resume from a checkpoint trained with other options (the model config, or
    an option that changes the updates) unless --continue-with-new-options. Returns
    ({option: (old, new)} of those that change the updates, of those that do not)."""
    import dataclasses

    p = trainer.params
    config = config_changes(ckpt["model_config"], trainer.system.to_dict())
    recorded = ckpt.get("params") or {}
    changed, other = {}, {}
    if recorded:
        defaults = {}  # of the fields that have one
        for f in dataclasses.fields(p):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
        changed, other = option_changes(recorded, p.to_dict(), defaults)
    else:
        trainer.log.warning("%s records no training options: they cannot be compared with "
                            "these", resume)
    recorded_teacher = ckpt.get("teacher_sha256")
    if p.teacher and recorded_teacher and "teacher" not in changed \
            and recorded_teacher != trainer.teacher_sha256:
        changed["teacher"] = (f"{p.teacher} (sha256 {recorded_teacher[:12]})",
                              f"{p.teacher} rewritten since (sha256 "
                              f"{trainer.teacher_sha256[:12]})")
    if config or (changed and not p.continue_with_new_options):
        raise ValueError(refusal(trainer.exp_dir, resume, int(ckpt["step"]), changed, config,
                                 p.model_config))
    return changed, other


def resumed(trainer, resume: Path, ckpt: dict, changed: dict, other: dict,
            sampler_state: Optional[dict]) -> Optional[dict]:
    """After the checkpoint's states are loaded: log the allowed changes, and with
    --continue-with-new-options make the restored optimizer and scheduler take the new
    learning rate, warm-up and weight decay (their states carry the old ones), drop a
    mid-epoch sampler position drawn under other batching options, and record the change
    (trainer.history_event, for params.json). Returns the sampler state to restore."""
    if other:
        trainer.log.info("resuming with options that change no update: %s", describe(other))
    if not changed:
        return sampler_state
    p, opt, sched = trainer.params, trainer.optimizer, trainer.scheduler
    trainer.log.warning("--continue-with-new-options: resuming from %s (step %d) with "
                        "changed options: %s (recorded in %s)", resume, ckpt["step"],
                        describe(changed), trainer.exp_dir / "params.json")
    trainer.history_event = history_event(
        "continue-with-new-options", checkpoint=resume.name, step=int(ckpt["step"]),
        changed={k: [o, n] for k, (o, n) in changed.items()})
    if changed.keys() & {"lr", "warmup_steps", "weight_decay"}:
        # LambdaLR's state restores the old base lr; its lambda is the new warm-up's
        factor = sched.lr_lambdas[0](sched.last_epoch)
        sched.base_lrs = [p.lr for _ in opt.param_groups]
        for group in opt.param_groups:
            group.update(initial_lr=p.lr, lr=p.lr * factor, weight_decay=p.weight_decay)
        sched._last_lr = [g["lr"] for g in opt.param_groups]
    batching = changed.keys() & {"train_cuts", "max_duration", "num_buckets", "seed"}
    if sampler_state is not None and batching:
        trainer.log.warning("%s is inside epoch %d, whose batches were drawn with the old %s: "
                            "the epoch's data order restarts under the new options", resume,
                            int(ckpt["epoch"]), ", ".join(map(option_name, sorted(batching))))
        return None
    return sampler_state


def write_params_json(trainer) -> None:
    """<exp-dir>/params.json: this run's options and config, and the history of the runs
    that changed them or started over, carried from the params.json before."""
    from speechmoe.data.corpus import corpus_of_cuts

    path = trainer.exp_dir / "params.json"
    history = read_history(path) + ([trainer.history_event] if trainer.history_event else [])
    path.write_text(json.dumps(
        {"train": trainer.params.to_dict(), "system": trainer.system.to_dict(),
         "world_size": trainer.dist.world_size,
         "corpus": corpus_of_cuts(trainer.params.dev_cuts),
         **({"history": history} if history else {})}, indent=1))


def nothing_to_train(trainer) -> None:
    """Say so when the resumed checkpoint already reaches --num-epochs / --max-steps."""
    p = trainer.params
    if trainer.start_epoch <= p.num_epochs and not trainer.budget_spent():
        return
    limit = f"--max-steps {p.max_steps}" if trainer.budget_spent() else \
        f"--num-epochs {p.num_epochs}"
    trainer.log.info("nothing to train: %s (step %d) already reaches %s; raise it to train "
                     "on, or --start-over true to train again",
                     trainer.resumed_from or trainer.exp_dir, trainer.step, limit)
