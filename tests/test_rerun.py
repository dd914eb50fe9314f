"""Reruns that say what they do: a resume with other options is refused (naming each),
--continue-with-new-options and --start-over are the two explicit ways on, an identical
rerun resumes as before; run.sh's --tag / --exp-dir / --force reach the stages."""

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from speechmoe.checkpoint import epoch_checkpoints, load_checkpoint
from speechmoe.train.trainer import Trainer, train

ROOT = Path(__file__).resolve().parents[1]


_ONE_EPOCH: dict = {}


@pytest.fixture
def trained(train_params, tmp_path_factory):
    """One epoch of the tiny run, trained once per session and copied into each test's
    exp dir (a moved experiment: exp_dir may differ on a resume): its params and exp dir."""
    params = dataclasses.replace(train_params, num_epochs=1, save_every_n=0)
    if "exp" not in _ONE_EPOCH:
        first = dataclasses.replace(params, exp_dir=str(tmp_path_factory.mktemp("once") / "exp"))
        train(first)
        _ONE_EPOCH["exp"] = Path(first.exp_dir)
    shutil.copytree(_ONE_EPOCH["exp"], params.exp_dir)
    exp = Path(params.exp_dir)
    assert list(epoch_checkpoints(exp)) == [1]
    return params, exp


def test_a_resume_with_another_lr_is_refused_naming_it(trained):
    params, exp = trained
    before = (exp / "params.json").read_text()
    with pytest.raises(ValueError) as err:
        Trainer(dataclasses.replace(params, lr=0.003, num_epochs=2))
    msg = str(err.value)
    assert "--lr 0.002 -> 0.003" in msg
    assert "--num-epochs" not in msg  # more epochs only extend the run
    for way in ("--exp-dir", "--tag", "--start-over true", "--continue-with-new-options true"):
        assert way in msg
    assert "\n" not in msg  # cli_main's one line
    assert (exp / "params.json").read_text() == before  # the refused run recorded nothing
    # every differing option is named, old and new
    with pytest.raises(ValueError, match=r"--warmup-steps 5 -> 50.*--seed 42 -> 7"):
        Trainer(dataclasses.replace(params, warmup_steps=50, seed=7))


def test_an_identical_rerun_resumes_as_before(trained):
    params, exp = trained
    t = Trainer(dataclasses.replace(params, num_epochs=2, num_workers=0))
    assert (t.start_epoch, t.resumed_from) == (2, exp / "epoch-1.pt")
    log = (exp / "log" / "train.log").read_text()
    assert "resuming from" in log and "--num-epochs 1 -> 2" in log  # said, not refused
    assert "history" not in json.loads((exp / "params.json").read_text())
    # a finished run says there is nothing to train
    train(params)
    assert "nothing to train" in (exp / "log" / "train.log").read_text()


def test_continue_with_new_options_resumes_and_records_the_change(trained):
    params, exp = trained
    new = dataclasses.replace(params, lr=0.003, num_epochs=2, continue_with_new_options=True)
    t = Trainer(new)
    assert (t.start_epoch, t.step) == (2, load_checkpoint(exp / "epoch-1.pt")["step"])
    # the restored optimizer and scheduler run at the new learning rate
    assert t.scheduler.base_lrs == [0.003] * len(t.optimizer.param_groups)
    factor = min(t.step / params.warmup_steps, (params.warmup_steps / t.step) ** 0.5)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.003 * factor)
    history = json.loads((exp / "params.json").read_text())["history"]
    assert history[-1]["event"] == "continue-with-new-options"
    assert history[-1]["changed"] == {"lr": [0.002, 0.003]}
    assert "--continue-with-new-options: resuming" in (exp / "log" / "train.log").read_text()
    t.run()
    # the new checkpoint holds the new options: the next rerun needs no flag
    assert load_checkpoint(exp / "epoch-2.pt")["params"]["lr"] == 0.003
    t = Trainer(dataclasses.replace(new, continue_with_new_options=False))
    assert t.start_epoch == 3
    assert json.loads((exp / "params.json").read_text())["history"] == history  # kept


def test_continuing_mid_epoch_with_other_batching_restarts_the_epochs_order(trained):
    params, exp = trained
    t = Trainer(dataclasses.replace(params, num_epochs=2))
    t.step = 8
    t.save("checkpoint-8.pt", 2, False)  # inside epoch 2
    t = Trainer(dataclasses.replace(params, num_epochs=2, lr=0.003,
                                    continue_with_new_options=True))
    assert (t.start_epoch, t.step) == (2, 8) and t.sampler_state is not None  # same batches
    t = Trainer(dataclasses.replace(params, num_epochs=2, max_duration=6.0,
                                    continue_with_new_options=True))
    assert (t.start_epoch, t.step, t.sampler_state) == (2, 8, None)
    assert "the epoch's data order restarts" in (exp / "log" / "train.log").read_text()


def test_start_over_moves_the_old_run_aside_and_trains_fresh(trained):
    params, exp = trained
    old_ckpt = (exp / "epoch-1.pt").read_bytes()
    new = dataclasses.replace(params, lr=0.003, start_over=True)
    t = Trainer(new)
    assert (t.start_epoch, t.step, t.resumed_from) == (1, 0, None)
    aside = [p for p in exp.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1
    assert (aside[0] / "epoch-1.pt").read_bytes() == old_ckpt  # moved, not deleted
    assert (aside[0] / "log" / "train.log").is_file() and (aside[0] / "params.json").is_file()
    assert not epoch_checkpoints(exp)
    assert json.loads((exp / "params.json").read_text())["history"][-1] == {
        **json.loads((exp / "params.json").read_text())["history"][-1],
        "event": "start-over", "previous": aside[0].name}
    t.run()
    assert load_checkpoint(exp / "epoch-1.pt")["params"]["lr"] == 0.003
    assert "moved to" in (exp / "log" / "train.log").read_text()


def test_model_changes_cannot_be_continued_and_both_ways_at_once_are_refused(trained):
    params, exp = trained
    overrides = {**params.model_overrides, "num_layers": 4}
    with pytest.raises(ValueError, match=r"another model config \(model\.num_layers 2 -> 4") \
            as err:
        Trainer(dataclasses.replace(params, model_overrides=overrides,
                                    continue_with_new_options=True))
    assert "--model-overrides" in str(err.value) and "--start-over true" in str(err.value)
    with pytest.raises(ValueError, match="choose one"):
        Trainer(dataclasses.replace(params, start_over=True, continue_with_new_options=True))


def test_train_py_takes_the_two_options():
    from helpers import load_script

    args = load_script("train").get_parser().parse_args(
        ["--exp-dir", "e", "--model-config", "m", "--lang-dir", "l", "--train-cuts", "t",
         "--dev-cuts", "d", "--cmvn", "c", "--start-over", "true",
         "--continue-with-new-options", "false"])
    assert args.start_over is True and args.continue_with_new_options is False


def test_rerun_helpers():
    from speechmoe.train.rerun import config_changes, move_aside, option_changes, same

    assert same(120, 120.0) and same(["a"], ("a",)) and not same(True, 1)
    changed, other = option_changes({"lr": 0.001, "num_epochs": 10},
                                    {"lr": 0.001, "num_epochs": 12, "spec_augment": True},
                                    {"spec_augment": False})
    assert changed == {"spec_augment": (False, True)}  # a field older runs lacked: default
    assert other == {"num_epochs": (10, 12)}
    assert config_changes({"model": {"a": 1, "b": 2}}, {"model": {"a": 1, "b": 3}}) == {
        "model.b": (2, 3)}
    assert move_aside(Path("/nonexistent/exp")) == (None, [])


# --------------------------------------------------------------------------- run.sh wiring

ARGS_LOG = "ARGS_LOG"


def fake_recipe(tmp_path: Path, recipe: str) -> Path:
    """egs/<recipe> in a scratch tree whose `python` records its arguments and does nothing."""
    top = tmp_path / "tree"
    shutil.copytree(ROOT / "tools", top / "tools")
    rdir = top / "egs" / recipe
    (rdir / "conf" / "model").mkdir(parents=True)
    (rdir / "conf" / "model" / "moe_4e.yaml").write_text("")
    for f in ("run.sh", "path.sh", "db.sh"):
        if (ROOT / "egs" / recipe / f).exists():
            shutil.copy2(ROOT / "egs" / recipe / f, rdir)
    fakebin = top / "bin"
    fakebin.mkdir()
    (fakebin / "python").write_text(f'#!/bin/sh\necho "$*" >> "${ARGS_LOG}"\n')
    (fakebin / "python").chmod(0o755)
    return rdir


def run_fake(rdir: Path, *args):
    log = rdir / "args.log"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{rdir.parents[1] / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get(
        "HOME", "/tmp"), "CORPUS": "/corpus", "AISHELL2": "/corpus", ARGS_LOG: str(log)}
    r = subprocess.run(["./run.sh", *args], cwd=rdir, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return r, {Path(c.split()[0]).name: c for c in calls}


@pytest.mark.parametrize("recipe", ["synth_mandarin", "aishell2", "TEMPLATE"])
def test_run_sh_passes_tag_exp_dir_and_force(recipe, tmp_path):
    rdir = fake_recipe(tmp_path, recipe)
    _, calls = run_fake(rdir, "--stage", "4", "--stop-stage", "5")
    assert "--exp-dir exp/moe_4e " in calls["train.py"]
    assert "--start-over" not in calls["train.py"] and "--force" not in calls["decode.py"]
    r, calls = run_fake(rdir, "--stage", "4", "--stop-stage", "5", "--tag", "lr3",
                        "--force", "true")
    assert "--exp-dir exp/moe_4e_lr3 " in calls["train.py"]
    assert "--start-over true" in calls["train.py"]
    assert "--exp-dir exp/moe_4e_lr3 " in calls["decode.py"] and "--force" in calls["decode.py"]
    assert "--force true: training moe_4e from scratch" in r.stdout
    _, calls = run_fake(rdir, "--stage", "4", "--stop-stage", "4", "--exp-dir", "/x/run2",
                        "--continue-with-new-options", "true")
    assert "--exp-dir /x/run2 " in calls["train.py"]
    assert "--continue-with-new-options true" in calls["train.py"]
    r, _ = run_fake(rdir, "--help")
    for option in ("--tag ''", "--exp-dir ''", "--force false", "--start-over false",
                   "--continue-with-new-options false"):
        assert f"  {option}" in r.stdout.splitlines()


def test_stage_1_says_what_it_skips(tmp_path):
    rdir = fake_recipe(tmp_path, "aishell2")  # stage 1: the RIR bank and train_rvb
    _, calls = run_fake(rdir, "--stage", "1", "--stop-stage", "1")
    assert "simulate_rir.py" in calls  # nothing there yet: made
    for f in ("data/rir/noise.jsonl.gz", "data/manifests/cuts_train_rvb.jsonl.gz"):
        (rdir / f).parent.mkdir(parents=True, exist_ok=True)
        (rdir / f).write_text("")
    r, calls = run_fake(rdir, "--stage", "1", "--stop-stage", "1")
    assert "simulate_rir.py" not in calls
    assert ("Stage 1: complete, skipped: RIR bank (data/rir/noise.jsonl.gz, written last); "
            "train_rvb (data/manifests/cuts_train_rvb.jsonl.gz)") in r.stdout
