"""Faults: bad audio, bad text, NaN losses, killed runs, half-done stages, bad options.

Each test provokes one fault the way it happens on a shared cluster and checks that it
is reported clearly and that nothing already written is lost.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- bad audio


def make_bad_files(d: Path, good_wav: Path) -> dict[str, Path]:
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    files = {"good": d / "good.wav", "corrupt": d / "corrupt.wav", "empty": d / "empty.wav",
             "zero": d / "zero.wav", "rate8k": d / "rate8k.wav", "missing": d / "missing.wav"}
    shutil.copy(good_wav, files["good"])
    files["corrupt"].write_bytes(b"RIFF\x00\x00junk" + os.urandom(2000))
    files["empty"].write_bytes(b"")
    sf.write(files["zero"], np.zeros(0, dtype=np.float32), 16000)
    sf.write(files["rate8k"], np.zeros(8000, dtype=np.float32), 8000)
    return files


def test_data_prep_reports_each_bad_audio_file_and_goes_on(tiny_corpus, tmp_path):
    from speechmoe.data.audio import probe_recording

    files = make_bad_files(tmp_path, tiny_corpus["root"] / "wav" / "utt000.wav")
    results = {k: probe_recording(p, k) for k, p in files.items()}
    assert results["good"][0] is not None and results["good"][1] is None
    reasons = {k: r for k, (rec, r) in results.items() if rec is None}
    assert set(reasons) == {"corrupt", "empty", "zero", "rate8k", "missing"}
    assert "unreadable" in reasons["corrupt"]
    assert "0 bytes" in reasons["empty"]
    assert "zero-length" in reasons["zero"]
    assert "8000 Hz" in reasons["rate8k"]
    assert "not found" in reasons["missing"]


def test_feature_stage_leaves_out_bad_audio_with_a_report(tiny_corpus, tmp_path):
    """Manifests that point at files gone bad after data prep: the stage reports and goes on."""
    from lhotse import CutSet

    raw = CutSet.from_file(tiny_corpus["raw_cuts"]).to_eager()
    cuts = list(raw)[:4]
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = []
    for cut, how in zip(cuts[1:], ("corrupt", "empty", "gone")):
        dst = bad / f"{cut.id}.wav"
        if how == "corrupt":
            dst.write_bytes(b"RIFF" + os.urandom(500))
        elif how == "empty":
            dst.write_bytes(b"")
        rec = cut.recording
        rec.sources[0].source = str(dst)
        broken.append(cut.id)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    CutSet.from_cuts(cuts).to_file(manifests / "cuts_x.jsonl.gz")
    out = tmp_path / "fbank"
    r = subprocess.run([sys.executable, str(ROOT / "local/compute_fbank.py"), "--manifest-dir",
                        str(manifests), "--out-dir", str(out), "--sets", "x", "--cmvn-sets", "x",
                        "--num-jobs", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    listed = (out / "bad_audio_x.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(broken)
    assert all(line.split("\t")[2] for line in listed)  # a reason for each
    assert "excluded 3 of 4 utterances" in r.stderr
    kept = CutSet.from_file(out / "cuts_x.jsonl.gz")
    assert [c.id for c in kept] == [cuts[0].id]


# ----------------------------------------------------------------------------- bad text


def test_bad_transcripts_are_reported_and_excluded(tiny_corpus, caplog):
    from lhotse import CutSet

    from speechmoe.data.dataset import filter_trainable
    from speechmoe.lang.tokenizer import LexiconTokenizer

    cuts = list(CutSet.from_file(tiny_corpus["cuts"]))
    tok = LexiconTokenizer(tiny_corpus["lang"])
    empty = cuts[0].map_supervisions(lambda s: dataclasses.replace(s, text=""))
    oov = cuts[1].map_supervisions(lambda s: dataclasses.replace(s, text="x-ray"))
    long = cuts[2].map_supervisions(
        lambda s: dataclasses.replace(s, text=" ".join(["中国"] * 60)))
    good = cuts[3]
    with caplog.at_level("WARNING", logger="speechmoe"):
        kept, dropped = filter_trainable([empty, oov, long, good], tok, name="t")
    assert [c.id for c in kept] == [good.id]
    reasons = dict(dropped)
    assert "empty transcript" in reasons[empty.id]
    assert "no pronunciation" in reasons[oov.id]
    assert "CTC frames" in reasons[long.id]
    assert "excluded 3 of 4" in caplog.text


# ----------------------------------------------------------------------------- NaN losses


def nan_on(steps_to_poison):
    """Wrap speechmoe_loss so that the given (1-based) calls return NaN."""
    from speechmoe.train import trainer

    real = trainer.speechmoe_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        loss, parts = real(*a, **k)
        calls["n"] += 1
        if calls["n"] in steps_to_poison:
            return loss * float("nan"), {**parts, "ctc": float("nan")}
        return loss, parts

    return poisoned


def test_nan_loss_steps_are_skipped_counted_and_logged(train_params, monkeypatch):
    from speechmoe.train import trainer

    monkeypatch.setattr(trainer, "speechmoe_loss", nan_on({2, 3}))
    trainer.train(train_params)
    exp = Path(train_params.exp_dir)
    log = (exp / "log" / "train.log").read_text()
    assert log.count("step skipped") == 2 and "(2 in a row, 2 in all)" in log
    losses = [json.loads(x) for x in (exp / "log" / "losses.jsonl").read_text().splitlines()]
    assert all(np.isfinite(x["loss"]) for x in losses)
    ckpt = torch.load(exp / "epoch-2.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_too_many_nan_losses_stop_with_a_usable_checkpoint(train_params, monkeypatch):
    from speechmoe.train import trainer

    train_params.max_bad_steps = 3
    monkeypatch.setattr(trainer, "speechmoe_loss", nan_on(set(range(3, 100))))
    with pytest.raises(trainer.NonFiniteLossError, match="3 steps in a row") as err:
        trainer.train(train_params)
    path = Path(str(err.value).split("last good weights are in ")[1].split(". ")[0])
    assert path.is_file()
    from speechmoe.inference import load_model_for_inference

    model, _ = load_model_for_inference(path)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ----------------------------------------------------------------------------- killed runs


def train_cli(params, env_extra=None):
    args = [sys.executable, str(ROOT / "local/train.py"), "--exp-dir", params.exp_dir,
            "--model-config", params.model_config, "--lang-dir", params.lang_dir,
            "--train-cuts", *params.train_cuts, "--dev-cuts", params.dev_cuts,
            "--cmvn", params.cmvn, "--num-epochs", str(params.num_epochs),
            "--max-duration", str(params.max_duration), "--num-buckets",
            str(params.num_buckets), "--lr", str(params.lr), "--warmup-steps",
            str(params.warmup_steps), "--num-workers", "0", "--log-interval", "2",
            "--save-every-n", str(params.save_every_n),
            "--model-overrides", json.dumps(params.model_overrides)]
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, env=env)


def step_losses(exp: Path) -> dict[int, float]:
    """step -> loss; a resumed run's steps overwrite the killed run's (they must agree)."""
    out = {}
    for line in (exp / "log" / "losses.jsonl").read_text().splitlines():
        x = json.loads(line)
        out[x["step"]] = x["loss"]
    return out


@pytest.fixture
def reference_run(train_params, tmp_path):
    import dataclasses

    params = dataclasses.replace(train_params, exp_dir=str(tmp_path / "reference"), num_epochs=3)
    r = train_cli(params)
    assert r.returncode == 0, r.stderr[-3000:]
    return params, step_losses(Path(params.exp_dir))


@pytest.mark.parametrize("kill_at", ["step:7", "save:checkpoint-6.pt", "save:epoch-1.pt"])
def test_killed_run_resumes_and_reproduces_the_losses(reference_run, tmp_path, kill_at):
    import dataclasses

    params, ref = reference_run
    assert len(ref) >= 10
    run = dataclasses.replace(params, exp_dir=str(tmp_path / "killed"))
    r = train_cli(run, {"SPEECHMOE_KILL_AT": kill_at})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])  # SIGKILL
    exp = Path(run.exp_dir)
    # Nothing half-written is visible under a checkpoint name.
    for p in exp.glob("*.pt"):
        torch.load(p, weights_only=True)
    r = train_cli(run)  # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in (exp / "log" / "train.log").read_text()
    got = step_losses(exp)
    assert sorted(got) == sorted(ref)
    for step, loss in ref.items():
        assert got[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step
    assert not list(exp.glob(".*.tmp"))
    # An epoch continued from a mid-epoch checkpoint reports its whole audio and time, those
    # of the killed process included (the checkpoint carries them), and says it was resumed.
    last_per_epoch = load_script("tables").last_per_epoch  # as the tables read them
    epochs = last_per_epoch(exp / "log" / "epochs.jsonl")
    ref_epochs = last_per_epoch(Path(params.exp_dir) / "log" / "epochs.jsonl")
    assert [e["hours"] for e in epochs] == [e["hours"] for e in ref_epochs]
    # (6 steps an epoch, a checkpoint every 3: killed at step 7 it resumes from epoch-1.pt;
    # killed saving checkpoint-6 or epoch-1, from checkpoint-3 or -6, inside epoch 1)
    resumed = [e["resumed"] for e in epochs if "resumed" in e]
    assert resumed == ([] if kill_at == "step:7" else ["carried"]), epochs
    if resumed:
        done = re.search(r"step \d+, ([0-9.]+) s of the epoch done\)",
                         (exp / "log" / "train.log").read_text())
        assert done and epochs[0]["seconds"] >= float(done.group(1)) > 0
    assert all("resumed" not in e for e in ref_epochs)


# ----------------------------------------------------------------------------- half-done stages


def test_a_stage_killed_half_way_is_redone(tiny_corpus, tmp_path):
    from lhotse import CutSet

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    raw = CutSet.from_file(tiny_corpus["raw_cuts"]).subset(first=5)
    raw.to_file(manifests / "cuts_x.jsonl.gz")
    out = tmp_path / "fbank"
    cmd = [sys.executable, str(ROOT / "local/compute_fbank.py"), "--manifest-dir",
           str(manifests), "--out-dir", str(out), "--sets", "x", "--cmvn-sets", "x",
           "--num-jobs", "1"]
    subprocess.run(cmd, check=True, capture_output=True)
    # As if killed after writing half of the output and before its done-marker.
    target = out / "cuts_x.jsonl.gz"
    target.write_bytes(target.read_bytes()[:50])
    (out / ".x.done").unlink()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "features exist, skipping" not in r.stderr
    assert len(CutSet.from_file(target)) == 5
    # With the marker in place the stage is skipped.
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert "features exist, skipping" in r.stderr


def test_the_feature_stage_makes_another_front_end_and_refuses_an_impossible_one(
        tiny_corpus, tmp_path):
    """--num-mel-bins / --high-freq reach the stored features, features.json and the CMVN
    statistics; bands kaldifeat cannot build are a one-line error before anything is
    written (kaldifeat itself would abort the process)."""
    import torch
    from lhotse import CutSet

    from speechmoe.features import FeatureConfig, GlobalCMVN

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    CutSet.from_file(tiny_corpus["raw_cuts"]).subset(first=3).to_file(
        manifests / "cuts_x.jsonl.gz")
    out = tmp_path / "fbank80"
    cmd = [sys.executable, str(ROOT / "local/compute_fbank.py"), "--manifest-dir",
           str(manifests), "--out-dir", str(out), "--sets", "x", "--cmvn-sets", "x",
           "--num-jobs", "1", "--num-mel-bins", "80", "--high-freq", "-400"]
    subprocess.run(cmd, check=True, capture_output=True)
    cfg = FeatureConfig.load(out / "features.json")
    assert (cfg.num_mel_bins, cfg.high_freq, cfg.pitch) == (80, -400.0, False)
    cut = next(iter(CutSet.from_file(out / "cuts_x.jsonl.gz")))
    assert cut.load_features().shape[1] == 80
    assert GlobalCMVN.load(out / "cmvn.pt").mean.shape == torch.Size([240])
    bad = tmp_path / "fbank130"
    r = subprocess.run(cmd[:-4] + ["--out-dir", str(bad), "--num-mel-bins", "130"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "holds no FFT bin" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (bad / "features.json").exists()


# ----------------------------------------------------------------------------- bad options


def test_bad_config_is_a_one_line_error_naming_the_fix(train_params, tmp_path):
    import dataclasses

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_expert: 4\n")
    r = train_cli(dataclasses.replace(train_params, model_config=str(bad)))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "num_expert" in err[0] and "known keys" in err[0]


def test_missing_input_is_a_one_line_error(train_params, tmp_path):
    import dataclasses

    r = train_cli(dataclasses.replace(train_params, cmvn=str(tmp_path / "nope.pt")))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith("nope.pt: not found (run the earlier "
                                                       "stages first)")
