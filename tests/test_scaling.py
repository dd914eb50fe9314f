"""The data-scaling study's report (speechmoe.tables.scaling, local/scaling_report.py) on
fabricated runs: the rule's verdict by hand, a size where MoE-8e is far better, one where it
is the same as B1, a size not run, and runs of one size on different amounts of audio."""

import gzip
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from speechmoe.tables.runs import NoRunsError, TablesError
from speechmoe.tables.scaling import scaling_markdown, scaling_report, verdict, write_scaling

ROOT = Path(__file__).resolve().parents[1]
SETS = ("test_read", "test_chat", "test_spon")


def write_run(tables_dir, system, seed, p_err, hours, n_utt=300, spread=0.003):
    rng_ref = np.random.default_rng(7)
    refs = rng_ref.integers(5, 20, size=n_utt)
    ids = [f"u{i:05d}" for i in range(n_utt)]
    rng = np.random.default_rng(zlib.crc32(f"{system}/{seed}/{hours}".encode()))
    p = p_err + spread * (seed - 2)
    results, utts = {}, {}
    for t in SETS:
        errors = rng.binomial(refs, p)
        results[t] = {"wfst": {"metric": "CER", "rate": 100.0 * errors.sum() / refs.sum(),
                               "utterances": n_utt, "ref_tokens": int(refs.sum())}}
        utts[t] = {"wfst": {"ids": ids, "errors": errors.tolist(), "ref": refs.tolist()}}
    curve = [{"step": s, "dev_ctc": 1.0 / s, "dev_greedy_ter": 100 * p + 50.0 / s}
             for s in (250, 500)]
    run = {"system": system, "seed": seed, "params": 1000, "macs_per_second": 1.0,
           "normalization": "utterance", "train_hours": hours,
           "epochs": [{"epoch": 1, "train_seconds": 10.0, "dev_ctc": 0.1,
                       "dev_greedy_ter": curve[-1]["dev_greedy_ter"], "step": 500}],
           "dev_curve": curve, "routing": [],
           "decode": {"network_rtf": 0.01, "decode_rtf": 0.02, "acoustic_scale": 1.0},
           "results": results}
    d = Path(tables_dir) / "runs" / system
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed{seed}.json").write_text(json.dumps(run))
    with gzip.open(d / f"seed{seed}.utts.json.gz", "wt") as f:
        json.dump(utts, f)


def test_verdict_by_hand():
    ok = {"status": "ok", "ci_excludes_zero": True, "exceeds_seed_noise": True}
    assert verdict({**ok, "rel_change": -0.1}) == "better"
    assert verdict({**ok, "rel_change": 0.1}) == "worse"
    assert verdict({**ok, "rel_change": -0.1, "exceeds_seed_noise": False}) == "no difference"
    assert verdict({**ok, "rel_change": -0.1, "ci_excludes_zero": False}) == "no difference"
    assert verdict({**ok, "rel_change": -0.1, "exceeds_seed_noise": None}) == "n/a"
    assert verdict({"status": "n/a"}) == "n/a"


@pytest.fixture
def study(tmp_path):
    for k in (1, 2, 3):
        # the same as B1, seeds 2 points apart: within seed noise
        write_run(tmp_path / "3.5h", "b1", k, 0.20, 3.5, spread=0.02)
        write_run(tmp_path / "3.5h", "moe_8e", k, 0.20, 3.5, spread=0.02)
        write_run(tmp_path / "17.5h", "b1", k, 0.15, 17.5)
        write_run(tmp_path / "17.5h", "moe_8e", k, 0.08, 17.5)  # far better
    return tmp_path


def test_report_verdicts_hours_and_what_is_missing(study):
    r = scaling_report(study, ["3.5h", "17.5h", "70h"], ["b1", "moe_8e"], [1, 2, 3], SETS,
                       n_boot=200)
    assert [e["size"] for e in r["sizes"]] == ["3.5h", "17.5h"]
    assert [e["hours"] for e in r["sizes"]] == [3.5, 17.5]
    small, large = ({c["test_set"]: c for c in e["comparisons"]} for e in r["sizes"])
    assert {c["verdict"] for c in large.values()} == {"better"}
    assert all(c["rel_change"] < -0.3 and c["ci_high"] < 0 for c in large.values())
    assert {c["verdict"] for c in small.values()} == {"no difference"}
    assert r["missing"] == [f"70h: {s}/seed{k}" for s in ("b1", "moe_8e") for k in (1, 2, 3)]
    dev = r["sizes"][1]["systems"]["moe_8e"]["dev"]
    assert dev["n"] == 3 and [p["step"] for p in dev["curve"]] == [250, 500]
    md = scaling_markdown(r)
    assert "## 17.5h (17.50 h" in md and "Runs not finished yet: 70h: b1/seed1" in md
    assert "CER" in md and "300 utts" in md


def test_write_and_cli(study, tmp_path):
    r = scaling_report(study, ["3.5h", "17.5h"], ["b1", "moe_8e"], [1, 2, 3], SETS, n_boot=100)
    paths = write_scaling(r, study)
    assert all(p.is_file() for p in paths) and paths[-1].suffix == ".png"
    out = subprocess.run([sys.executable, str(ROOT / "local" / "scaling_report.py"),
                          "--results-dir", str(study), "--sizes", "3.5h", "17.5h",
                          "--systems", "b1", "moe_8e", "--bootstrap", "100"],
                         capture_output=True, text=True, env={"MPLBACKEND": "Agg",
                                                              "PATH": "/usr/bin:/bin",
                                                              "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert json.loads((study / "scaling.json").read_text())["sizes"][1]["size"] == "17.5h"
    assert "What the trend says" not in (study / "SCALING.md").read_text()


def test_a_hand_written_note_is_quoted_after_the_rule(study):
    r = scaling_report(study, ["3.5h", "17.5h"], ["b1", "moe_8e"], [1, 2, 3], SETS, n_boot=50)
    (study / "NOTE.md").write_text("MoE-8e's lead grows with data.\n\nSecond paragraph.\n")
    md = write_scaling(r, study)[0].read_text()
    head, rest = md.split("## What the trend says", 1)
    assert "Rule, fixed before the first run" in head and "## 3.5h" not in head
    assert "> MoE-8e's lead grows with data.\n>\n> Second paragraph." in rest
    assert rest.index("Second paragraph") < rest.index("## 3.5h")


def test_nothing_run_and_mixed_hours_are_errors(tmp_path):
    with pytest.raises(NoRunsError, match="no finished run at any size"):
        scaling_report(tmp_path, ["3.5h"], ["b1"], [1], SETS)
    write_run(tmp_path / "3.5h", "b1", 1, 0.2, 3.5)
    write_run(tmp_path / "3.5h", "b1", 2, 0.2, 4.0)
    with pytest.raises(TablesError, match="different amounts of audio"):
        scaling_report(tmp_path, ["3.5h"], ["b1"], [1, 2], SETS)


def test_training_subset_from_another_corpus(tmp_path):
    """--train-cuts-dir: the training sets come from there (a larger corpus), the subset of
    --train-utts takes the first utterances of train and their copies, and the runs' settings
    record the directory."""
    import argparse
    import logging

    from lhotse import CutSet
    from lhotse.testing.dummies import dummy_cut

    sys.path.insert(0, str(ROOT / "local"))
    import tables

    big = tmp_path / "data_x4" / "fbank"
    big.mkdir(parents=True)
    CutSet.from_cuts(dummy_cut(i).with_id(f"train-{i:06d}") for i in range(6)).to_file(
        big / "cuts_train.jsonl.gz")
    CutSet.from_cuts(dummy_cut(i).with_id(f"train-{i:06d}_aug") for i in range(6)).to_file(
        big / "cuts_train_aug.jsonl.gz")
    args = argparse.Namespace(cuts_dir=tmp_path / "data" / "fbank", train_cuts_dir=big,
                              train_sets=["train", "train_aug"], train_utts=2,
                              exp_dir=tmp_path / "exp")
    outs = tables.train_subset(args, logging.getLogger("test"))
    assert [sorted(c.id for c in CutSet.from_file(p)) for p in outs] == [
        ["train-000000", "train-000001"], ["train-000000_aug", "train-000001_aug"]]
    args.train_utts = 0
    assert tables.train_subset(args, logging.getLogger("test")) == [
        big / "cuts_train.jsonl.gz", big / "cuts_train_aug.jsonl.gz"]


def test_variant_train_options_name_the_runs_own_base():
    """An upcycled variant's --init-from names its seed's dense run ({seed}, {exp})."""
    import argparse
    import json

    from helpers import load_script

    tables = load_script("tables")
    args = argparse.Namespace(exp_dir="exp/scaling/3.5h", variants=json.dumps({
        "up": {"base": "moe_8e", "train": "--init-from {exp}/dense_8l/seed{seed}/epoch-4.pt "
                                          "--budget-includes-base true"}}))
    assert tables.variant_train_options(args, "up", 2) == [
        "--init-from", "exp/scaling/3.5h/dense_8l/seed2/epoch-4.pt",
        "--budget-includes-base", "true"]
    assert tables.variant_train_options(args, "b1", 1) == []


def test_dev_rule_and_a_system_run_at_one_size_only(study):
    """On dev: the seed-mean gap against the larger seed std (by hand); moe_8e_up, run at
    3.5h only, is not "missing" at 17.5h and is compared with its from-scratch twin."""
    from speechmoe.tables.scaling import dev_verdict

    a, b = {"mean": 10.0, "std": 1.0}, {"mean": 12.5, "std": 2.0}
    assert dev_verdict(a, b) == {"gap": -2.5, "threshold": 2.0, "verdict": "better"}
    assert dev_verdict(b, a)["verdict"] == "worse"
    assert dev_verdict(a, {"mean": 11.5, "std": 2.0})["verdict"] == "no difference"
    assert dev_verdict(a, {"mean": 20.0, "std": None})["verdict"] == "n/a (one seed)"
    for k in (1, 2, 3):
        write_run(study / "3.5h", "moe_8e_up", k, 0.10, 3.5)  # dev 10.1 +- 0.3 vs 20.1 +- 2
    r = scaling_report(study, ["3.5h", "17.5h"], ["b1", "moe_8e", "moe_8e_up"], [1, 2, 3], SETS,
                       n_boot=100, optional=["moe_8e_up"], dev_pairs=[("moe_8e_up", "moe_8e")])
    assert r["missing"] == []
    small, large = ({(c["system"], c["ref"]): c for c in e["dev_comparisons"]}
                    for e in r["sizes"])
    assert small[("moe_8e", "b1")]["verdict"] == "no difference"
    assert small[("moe_8e_up", "b1")]["verdict"] == "better"
    assert small[("moe_8e_up", "moe_8e")]["verdict"] == "better"
    assert round(small[("moe_8e_up", "moe_8e")]["gap"], 6) == -10.0
    assert set(large) == {("moe_8e", "b1")} and large[("moe_8e", "b1")]["verdict"] == "better"
    md = scaling_markdown(r)
    assert "| moe_8e_up | moe_8e | -10.00 |" in md and "on dev, a system beats" in md
    assert not any(c["system"] == "moe_8e_up" for c in r["sizes"][1]["comparisons"])
    # system@size: not run at that size by design; elsewhere its absence is still missing
    for optional, missing in ((["moe_8e_up@17.5h"], []),
                              (["moe_8e_up@3.5h"], [f"17.5h: moe_8e_up/seed{k}" for k in
                                                    (1, 2, 3)])):
        r = scaling_report(study, ["3.5h", "17.5h"], ["b1", "moe_8e", "moe_8e_up"],
                           [1, 2, 3], SETS, n_boot=10, optional=optional)
        assert r["missing"] == missing, optional


def test_an_upcycled_runs_dev_curve_starts_after_its_base(study, tmp_path):
    """The curve of a run upcycled from a dense model's update 973 is plotted at 973 + its
    own steps; tables.py records those base updates from the run's init_from.json."""
    for k in (1, 2, 3):
        write_run(study / "3.5h", "moe_8e_up", k, 0.10, 3.5)
        path = study / "3.5h" / "runs" / "moe_8e_up" / f"seed{k}.json"
        run = json.loads(path.read_text())
        path.write_text(json.dumps({**run, "base_updates": 973}))
    r = scaling_report(study, ["3.5h"], ["b1", "moe_8e", "moe_8e_up"], [1, 2, 3], SETS,
                       n_boot=10, optional=["moe_8e_up"])
    systems = r["sizes"][0]["systems"]
    assert [p["step"] for p in systems["moe_8e_up"]["dev"]["curve"]] == [1223, 1473]
    assert [p["step"] for p in systems["b1"]["dev"]["curve"]] == [250, 500]

    from helpers import load_script

    tables = load_script("tables")
    assert tables.base_updates(tmp_path) == 0
    (tmp_path / "init_from.json").write_text(json.dumps({"base_updates": 973}))
    assert tables.base_updates(tmp_path) == 973


def test_other_pairs_are_compared_and_named(study):
    """--pairs: MoE-8e against its own backbone as well as against B1, each row naming what
    it is compared with; the report's heading can be another study's."""
    for k in (1, 2, 3):
        write_run(study / "17.5h", "dense_8l", k, 0.15, 17.5)
    r = scaling_report(study, ["17.5h"], ["b1", "moe_8e", "dense_8l"], [1, 2, 3], SETS,
                       n_boot=100, pairs=[("moe_8e", "dense_8l")])
    by = {(c["system"], c["ref"], c["test_set"]): c for c in r["sizes"][0]["comparisons"]}
    assert {(s, ref) for s, ref, _ in by} == {("moe_8e", "b1"), ("dense_8l", "b1"),
                                             ("moe_8e", "dense_8l")}
    assert by[("moe_8e", "dense_8l", SETS[0])]["verdict"] == "better"
    r["title"] = "MoE-8e on many voices"
    md = scaling_markdown(r)
    assert md.startswith("# MoE-8e on many voices")
    assert f"| moe_8e vs dense_8l | {SETS[0]} |" in md and "| system vs reference |" in md
    # without other pairs the table keeps its one reference in the heading
    plain = scaling_markdown(scaling_report(study, ["17.5h"], ["b1", "moe_8e"], [1, 2, 3],
                                            SETS, n_boot=10))
    assert "| system vs b1 |" in plain and "| moe_8e | " in plain
