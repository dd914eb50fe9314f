"""Tables 1-3 and Figure 2 from per-run files (speechmoe.tables), on fabricated runs."""

import gzip
import json
import zlib

import numpy as np
import pytest

from speechmoe.tables.cli import get_parser, main
from speechmoe.tables.figures import plot_dev_loss, plot_routing, routing_series
from speechmoe.tables.paper import (
    PAPER_PRINTED_REL_CHANGE,
    PAPER_RESULTS,
    SYSTEMS,
    paper_relative_change,
)
from speechmoe.tables.report import system_costs, write_tables
from speechmoe.tables.runs import (
    NoRunsError,
    RunFileError,
    TablesError,
    UtteranceMismatchError,
    load_runs,
    missing_runs,
    normalization,
)
from speechmoe.tables.stats import (
    compare,
    exceeds_seed_noise,
    paired_bootstrap,
    pooled_counts,
    rate_stats,
    seed_stats,
)

SETS = ("test_read", "test_chat", "test_spon")

# Per-system token error probability of the WFST output: MoE-8e far better than B1, MoE-2e worse.
P_ERR = {"b1": 0.20, "b2": 0.19, "moe_l1": 0.18, "moe_emb": 0.17, "moe_4e": 0.15,
         "moe_2e": 0.30, "moe_8e": 0.05}
EXPERTS = {"b1": 0, "b2": 4, "moe_l1": 4, "moe_emb": 4, "moe_4e": 4, "moe_2e": 2, "moe_8e": 8}


def write_run(tables_dir, system, seed, arrays, *, normalization="frame", n_layers=2,
              n_experts=4, epochs=3, params=1_000_000, metric_wfst="CER", decode=None):
    """Write runs/<system>/seed<seed>.json + .utts.json.gz.

    arrays: {test_set: {method: (ids, errors, ref)}}.
    """
    d = tables_dir / "runs" / system
    d.mkdir(parents=True, exist_ok=True)
    results, utts = {}, {}
    for t, methods in arrays.items():
        for m, (ids, errors, ref) in methods.items():
            errors, ref = [int(x) for x in errors], [int(x) for x in ref]
            results.setdefault(t, {})[m] = {
                "metric": metric_wfst if m == "wfst" else "toned-syllable ER",
                "rate": 100.0 * sum(errors) / sum(ref), "utterances": len(ids),
                "ref_tokens": sum(ref)}
            utts.setdefault(t, {})[m] = {"ids": list(ids), "errors": errors, "ref": ref}
    routing = []
    if n_experts:
        for step in (50, 100, 150):
            layers = []
            for layer in range(n_layers):
                frac = np.full(n_experts, 1.0 / n_experts)
                frac[0] += 0.01 * layer
                frac /= frac.sum()
                layers.append({"layer": layer, "fraction": frac.tolist(),
                               "entropy": float(-(frac * np.log(frac)).sum()) - 0.001 * step})
            routing.append({"step": step, "epoch": 1 + step // 100, "layers": layers})
    run = {
        "system": system, "seed": seed, "params": params, "macs_per_second": 1.23e9,
        "normalization": normalization,
        "epochs": [{"epoch": e, "train_seconds": 300.0 + 10 * e + seed,
                    "dev_ctc": 2.0 / e + 0.01 * seed + P_ERR.get(system, 0.2)}
                   for e in range(1, epochs + 1)],
        "routing": routing,
        "decode": decode or {"network_rtf": 0.01, "wfst_rtf": 0.02, "acoustic_scale": 1.0},
        "results": results,
    }
    (d / f"seed{seed}.json").write_text(json.dumps(run))
    with gzip.open(d / f"seed{seed}.utts.json.gz", "wt") as f:
        json.dump(utts, f)


def fabricate(tables_dir, systems=SYSTEMS, seeds=(1, 2, 3), n_utt=200, sets=SETS, p_err=None,
              **kw):
    """Runs for systems x seeds with binomial error counts (same refs for every run)."""
    p_err = p_err or P_ERR
    ref_rng = np.random.default_rng(123)
    refs = {t: ref_rng.integers(5, 20, size=n_utt) for t in sets}
    ids = {t: [f"{t}-{i:06d}" for i in range(n_utt)] for t in sets}
    for s in systems:
        for k in seeds:
            rng = np.random.default_rng(zlib.crc32(f"{s}/{k}".encode()))
            p = p_err[s] + 0.002 * (k - 2)
            arrays = {t: {"wfst": (ids[t], rng.binomial(refs[t], p), refs[t]),
                          "ctc_greedy": (ids[t], rng.binomial(refs[t], min(1.0, 1.5 * p)), refs[t])}
                      for t in sets}
            write_run(tables_dir, s, k, arrays, n_experts=EXPERTS.get(s, 4), **kw)


def small(tables_dir, system, seed, errors, ref, ids=None, sets=("test_read",), **kw):
    ids = ids or [f"u{i}" for i in range(len(errors))]
    write_run(tables_dir, system, seed,
              {t: {"wfst": (ids, errors, ref), "ctc_greedy": (ids, errors, ref)} for t in sets}, **kw)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    fabricate(d)
    report = write_tables(d, n_bootstrap=200)
    return d, report


# ------------------------------------------------------------------ statistics

def test_mean_and_std_by_hand(tmp_path):
    st = seed_stats([10.0, 12.0, 14.0])
    assert st == {"mean": 12.0, "std": 2.0, "n": 3}
    ref = [10, 10, 10, 10]
    for seed, errs in ((1, [1, 1, 1, 1]), (2, [2, 1, 1, 1]), (3, [3, 1, 1, 1])):
        small(tmp_path, "b1", seed, errs, ref)
    runs = load_runs(tmp_path)
    st = rate_stats(runs, "b1", "test_read")
    # rates 10, 12.5, 15 -> mean 12.5, sample std 2.5
    assert st["n"] == 3 and st["mean"] == pytest.approx(12.5)
    assert st["std"] == pytest.approx(2.5)
    assert st["pooled_rate"] == pytest.approx(100 * 15 / 120)


def test_std_of_one_seed_is_none_and_zero_seeds_raise(tmp_path):
    assert seed_stats([7.5]) == {"mean": 7.5, "std": None, "n": 1}
    with pytest.raises(NoRunsError, match="zero seeds"):
        seed_stats([])
    small(tmp_path, "b1", 1, [1, 2], [10, 10])
    runs = load_runs(tmp_path)
    assert rate_stats(runs, "b1", "test_read")["std"] is None
    with pytest.raises(NoRunsError, match="moe_2e"):
        rate_stats(runs, "moe_2e", "test_read")
    with pytest.raises(NoRunsError):
        rate_stats(runs, "b1", "test_nowhere")
    # one seed each: the seed-noise criterion is n/a, not False
    small(tmp_path, "moe_8e", 1, [0, 1], [10, 10])
    runs = load_runs(tmp_path)
    assert compare(runs, "moe_8e", "b1", "test_read", n_boot=50)["exceeds_seed_noise"] is None


def test_pooled_relative_change_by_hand(tmp_path):
    ref = [10, 10, 10, 10]
    small(tmp_path, "b1", 1, [2, 2, 2, 2], ref)   # 8 errors
    small(tmp_path, "b1", 2, [3, 3, 3, 3], ref)   # 12 errors -> pooled 20/80 = 25%
    small(tmp_path, "moe_8e", 1, [1, 1, 1, 1], ref)  # 4
    small(tmp_path, "moe_8e", 2, [2, 1, 2, 1], ref)  # 6 -> pooled 10/80 = 12.5%
    runs = load_runs(tmp_path)
    c = compare(runs, "moe_8e", "b1", "test_read", n_boot=200, seed=0)
    assert c["pooled_rate"] == pytest.approx(12.5) and c["pooled_rate_ref"] == pytest.approx(25.0)
    assert c["rel_change"] == pytest.approx(-0.5)
    # seed means 12.5 vs 25, stds 3.54 and 7.07: |diff| 12.5 > 7.07
    assert c["mean_diff"] == pytest.approx(-12.5)
    assert c["noise_threshold"] == pytest.approx(np.std([20, 30], ddof=1))
    assert c["exceeds_seed_noise"] is True


def test_seed_noise_criterion():
    a = {"mean": 10.0, "std": 0.5}
    assert exceeds_seed_noise(a, {"mean": 11.0, "std": 0.9}) is True
    assert exceeds_seed_noise(a, {"mean": 11.0, "std": 1.5}) is False
    assert exceeds_seed_noise(a, {"mean": 11.0, "std": None}) is None


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(5)
    ref = rng.integers(5, 20, size=300)
    e_ref = rng.binomial(ref, 0.2)
    e_sys = rng.binomial(ref, 0.15)
    a = paired_bootstrap(e_sys, ref, e_ref, ref, n_boot=500, seed=7)
    b = paired_bootstrap(e_sys, ref, e_ref, ref, n_boot=500, seed=7)
    c = paired_bootstrap(e_sys, ref, e_ref, ref, n_boot=500, seed=8)
    assert a == b
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])
    assert a["ci_low"] <= a["rel_change"] <= a["ci_high"]
    assert a["rel_change"] == pytest.approx((e_sys.sum() - e_ref.sum()) / e_ref.sum())
    assert a["ci_excludes_zero"] == (a["ci_high"] < 0 or a["ci_low"] > 0)
    # identical systems: CI straddles (touches) zero
    same = paired_bootstrap(e_ref, ref, e_ref, ref, n_boot=100, seed=0)
    assert same["rel_change"] == 0 and same["ci_excludes_zero"] is False


def test_mismatched_utterance_ids_raise(tmp_path):
    small(tmp_path, "b1", 1, [1, 2, 3], [10, 10, 10], ids=["a", "b", "c"])
    small(tmp_path, "moe_8e", 1, [1, 2, 3], [10, 10, 10], ids=["a", "b", "d"])
    runs = load_runs(tmp_path)
    with pytest.raises(UtteranceMismatchError, match=r"moe_8e and b1 .*'d'"):
        compare(runs, "moe_8e", "b1", "test_read", n_boot=10)
    with pytest.raises(UtteranceMismatchError):
        write_tables(tmp_path, n_bootstrap=10, set_names={"test_read": "Read"})
    # two seeds of one system on different utterances
    small(tmp_path, "b1", 2, [1, 2], [10, 10], ids=["a", "b"])
    runs = load_runs(tmp_path)
    with pytest.raises(UtteranceMismatchError, match="seed2 and seed1"):
        pooled_counts(runs, "b1", "test_read")


# ------------------------------------------------------------------ loading

def test_load_errors_name_the_file(tmp_path):
    small(tmp_path, "b1", 1, [1, 2], [10, 10])
    path = tmp_path / "runs" / "b1" / "seed1.json"
    run = json.loads(path.read_text())
    del run["macs_per_second"]
    path.write_text(json.dumps(run))
    with pytest.raises(RunFileError, match=r"seed1\.json: missing key\(s\) 'macs_per_second'"):
        load_runs(tmp_path)
    path.write_text("{not json")
    with pytest.raises(RunFileError, match=r"seed1\.json: not a readable JSON"):
        load_runs(tmp_path)
    small(tmp_path, "b1", 1, [1, 2], [10, 10])
    (tmp_path / "runs" / "b1" / "seed1.utts.json.gz").unlink()
    with pytest.raises(RunFileError, match=r"seed1\.utts\.json\.gz: missing"):
        load_runs(tmp_path)
    small(tmp_path, "b1", 1, [1, 2], [10, 10])
    run = json.loads(path.read_text())
    run["results"]["test_read"]["wfst"]["rate"] = 99.0
    path.write_text(json.dumps(run))
    with pytest.raises(RunFileError, match=r"seed1\.utts\.json\.gz: .*seed1\.json says rate 99"):
        load_runs(tmp_path)
    with pytest.raises(TablesError, match="no such directory"):
        load_runs(tmp_path / "nowhere")


def test_costs_and_the_decode_rtf_spelling(tmp_path):
    small(tmp_path, "b1", 1, [1], [10], decode={"network_rtf": 0.01, "decode_rtf": 0.03})
    small(tmp_path, "b1", 2, [1], [10], decode={"network_rtf": 0.03, "wfst_rtf": 0.05})
    c = system_costs(load_runs(tmp_path)["b1"])
    assert c["network_rtf"] == pytest.approx(0.02) and c["wfst_rtf"] == pytest.approx(0.04)
    # epochs 1..3 of seeds 1 and 2: the median
    assert c["train_seconds_per_epoch"] == pytest.approx(321.5)
    runs = load_runs(tmp_path)
    runs["b1"][1]["epochs"][0]["train_seconds"] = 5000.0  # one epoch slowed by another job
    assert system_costs(runs["b1"])["train_seconds_per_epoch"] == pytest.approx(326.5)
    assert c["params"]["value"] == 1_000_000
    # an epoch resumed without its earlier time counts only its tail: left out
    runs["b1"][2]["epochs"][0].update(train_seconds=3.0, resumed="partial")
    assert system_costs(runs["b1"])["train_seconds_per_epoch"] == pytest.approx(331.0)
    runs["b1"][2]["epochs"][0]["resumed"] = "carried"  # a whole epoch: counted
    assert system_costs(runs["b1"])["train_seconds_per_epoch"] == pytest.approx(326.5)
    path = tmp_path / "runs" / "b1" / "seed2.json"
    run = json.loads(path.read_text())
    run["epochs"][0]["resumed"] = "yes"
    path.write_text(json.dumps(run))
    with pytest.raises(TablesError, match="'resumed' must be"):
        load_runs(tmp_path)


def test_missing_runs_and_normalization(tmp_path):
    small(tmp_path, "b1", 1, [1], [10])
    small(tmp_path, "b1", 3, [1], [10])
    small(tmp_path, "moe_8e", 2, [1], [10])
    runs = load_runs(tmp_path)
    assert sorted(runs) == ["b1", "moe_8e"] and list(runs["b1"]) == [1, 3]
    assert missing_runs(runs, ["b1", "moe_8e", "moe_2e"], [1, 2, 3]) == [
        ("b1", 2), ("moe_8e", 1), ("moe_8e", 3), ("moe_2e", 1), ("moe_2e", 2), ("moe_2e", 3)]
    assert normalization(runs) == "frame"
    small(tmp_path, "moe_8e", 2, [1], [10], normalization="utterance")
    with pytest.raises(TablesError, match="disagree.*moe_8e/seed2"):
        normalization(load_runs(tmp_path))


def test_paper_numbers_and_their_relative_changes():
    assert PAPER_RESULTS["b1"]["cer"]["Chat"] == 22.92
    assert PAPER_RESULTS["moe_8e"]["params"] == 297e6
    for col, printed in PAPER_PRINTED_REL_CHANGE["moe_8e"].items():
        assert 100 * paper_relative_change("moe_8e", "b1", col) == pytest.approx(printed, abs=0.05)
    assert paper_relative_change("b1", "b1", "Read") == 0
    assert paper_relative_change("b1", "b2", None) is None


# ------------------------------------------------------------------ tables

def test_tables_written_with_paper_numbers(full):
    d, _ = full
    md = (d / "TABLES.md").read_text(encoding="utf-8")
    js = json.loads((d / "tables.json").read_text())
    for text in ("22.92", "24.95", "297M", "Table 1", "Table 2", "Table 3", "`frame`",
                 "200 utterances", "95% CI", "seed noise", "Δ vs B2"):
        assert text in md, text
    assert js["meta"]["normalization"] == "frame"
    assert js["paper"]["results"]["b1"]["cer"]["Chat"] == 22.92
    assert js["meta"]["seeds"] == [1, 2, 3] and js["meta"]["missing_runs"] == []
    row = next(r for r in js["tables"]["table3"]["rows"] if r["system"] == "moe_8e")
    cell = row["sets"]["test_read"]
    assert cell["wfst"]["n"] == 3 and cell["paper_cer"] == 1.54
    assert cell["paper_rel_change"]["b1"] == pytest.approx(-0.23)
    vs = cell["vs"]["b1"]
    assert vs["ci_low"] <= vs["rel_change"] <= vs["ci_high"] < 0 and vs["ci_excludes_zero"]
    # table 1 compares with B2 as well, tables 2 and 3 only with B1
    t1 = next(r for r in js["tables"]["table1"]["rows"] if r["system"] == "moe_l1")
    assert set(t1["sets"]["test_chat"]["vs"]) == {"b1", "b2"}
    t2 = next(r for r in js["tables"]["table2"]["rows"] if r["system"] == "moe_4e")
    assert t2["name"] == "+imp loss" and set(t2["sets"]["test_chat"]["vs"]) == {"b1"}
    # greedy lives in its own section with its own metric name
    assert "toned-syllable ER" in md.split("## Greedy CTC")[1]
    assert "toned-syllable ER" not in md.split("## Greedy CTC")[0]
    assert "TIMING_NOTES" not in md and "timing_notes" not in js["meta"]


def test_timing_notes_beside_the_runs_are_linked(tmp_path):
    small(tmp_path, "b1", 1, [1, 2], [10, 10])
    (tmp_path / "runs" / "TIMING_NOTES.md").write_text("b1/seed1: epoch 2 ran beside a test\n")
    write_tables(tmp_path, systems=("b1",), seeds=(1,), n_bootstrap=10)
    md = (tmp_path / "TABLES.md").read_text(encoding="utf-8")
    assert "Known disturbances of these wall times: `runs/TIMING_NOTES.md`" in md
    assert json.loads((tmp_path / "tables.json").read_text())["meta"]["timing_notes"] == \
        "runs/TIMING_NOTES.md"
    assert "\n> " not in md
    (tmp_path / "NOTE.md").write_text("Superseded in part:\n\nsee SCALING.md.\n")
    write_tables(tmp_path, systems=("b1",), seeds=(1,), n_bootstrap=10)
    md = (tmp_path / "TABLES.md").read_text(encoding="utf-8")
    assert "do not edit.\n\n> Superseded in part:\n>\n> see SCALING.md.\n\n- **Seeds**" in md


def test_orderings_section(full):
    d, report = full
    by = {(o["better"], o["worse"], o["test_set"]): o for o in report["orderings"]}
    for t in SETS:
        assert by[("moe_8e", "moe_4e", t)]["holds"] is True
        assert by[("moe_8e", "moe_4e", t)]["exceeds_seed_noise"] is True
        assert by[("moe_8e", "moe_4e", t)]["ci_excludes_zero"] is True
        assert by[("moe_2e", "b1", t)]["holds"] is False
        assert by[("moe_2e", "b1", t)]["holds_in_paper"] is True
    md = (d / "TABLES.md").read_text(encoding="utf-8")
    section = md.split("## Which of the paper's orderings hold")[1]
    lines = {tuple(c.strip() for c in ln.split("|")[1:3]): ln for ln in section.splitlines()
             if ln.startswith("| ")}
    assert "| holds |" in lines[("MoE-8e < +imp loss / MoE-4e", "test_read")]
    assert "| does not hold |" in lines[("MoE-2e < B1", "test_spon")]
    assert "- MoE-2e < B1: holds on 0 of 3 test sets" in section
    assert "Does not hold on 3 (test_read, test_chat, test_spon); of these, the reverse order is " \
           "beyond seed noise on 3 and its CI excludes 0 on 3" in section
    assert "- MoE-8e < +imp loss / MoE-4e: holds on 3 of 3 test sets" in section


def test_missing_system_and_seed_are_marked_not_zero(tmp_path):
    fabricate(tmp_path, systems=("b1", "moe_4e", "moe_8e"), seeds=(1, 2), n_utt=50,
              sets=("test_read",))
    small_dir = tmp_path / "runs" / "moe_8e"
    for f in small_dir.glob("seed2.*"):
        f.unlink()
    report = write_tables(tmp_path, systems=("b1", "moe_4e", "moe_2e", "moe_8e"), seeds=(1, 2),
                          set_names={"test_read": "Read"}, n_bootstrap=50)
    assert report["meta"]["systems_without_runs"] == ["moe_2e"]
    assert ["moe_8e", 2] in report["meta"]["missing_runs"]
    md = (tmp_path / "TABLES.md").read_text(encoding="utf-8")
    assert "## Missing runs" in md and "moe_8e: seed 2" in md
    row = next(ln for ln in md.split("## Table 3")[1].splitlines() if ln.startswith("| MoE-2e"))
    assert "0 — no runs" in row and "0.00" not in row
    row8 = next(ln for ln in md.split("## Table 3")[1].splitlines() if ln.startswith("| MoE-8e"))
    assert "missing seed 2" in row8
    cer_rows = [ln for ln in md.split("## Table 3")[1].split("**test_read**")[1].splitlines()
                if ln.startswith("| MoE-2e")]
    assert cer_rows and "— (no runs)" in cer_rows[0] and "n/a (no runs)" in cer_rows[0]
    assert "1.62" in cer_rows[0]  # the paper's number is still shown
    # one seed of MoE-8e: std n/a
    assert "± n/a (n=1)" in md
    with pytest.raises(NoRunsError):
        write_tables(tmp_path, systems=("moe_2e",), seeds=(1,), n_bootstrap=10)


# ------------------------------------------------------------------ figures and CLI

PNG = b"\x89PNG\r\n\x1a\n"


def test_figures(full, tmp_path):
    d, _ = full
    runs = load_runs(d, systems=("b1", "moe_2e", "moe_4e", "moe_8e"))
    a = plot_dev_loss(runs, tmp_path / "fig2.png")
    b = plot_routing(runs, tmp_path / "routing.png", system="moe_8e")
    for p in (a, b):
        data = p.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG
    series = routing_series(runs, "moe_8e")
    assert list(series) == [0, 1] and len(series[0]["fraction"][0]) == 8
    assert series[0]["steps"] == [50, 100, 150]
    with pytest.raises(TablesError, match="no routing records"):
        plot_routing(runs, tmp_path / "x.png", system="b1")
    with pytest.raises(NoRunsError, match="moe_emb: no runs"):
        plot_routing(runs, tmp_path / "x.png", system="moe_emb")
    with pytest.raises(NoRunsError):
        plot_dev_loss({}, tmp_path / "y.png")


def test_cli_writes_everything_and_reports_missing(tmp_path, capsys):
    fabricate(tmp_path, systems=("b1", "b2", "moe_2e", "moe_8e"), seeds=(1, 2), n_utt=40,
              sets=("test_ios",), n_layers=5)
    rc = main(["--tables-dir", str(tmp_path), "--seeds", "1", "2", "3",
               "--paper-columns", '{"test_ios": "AISHELL"}', "--bootstrap", "50"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "MISSING: moe_l1 has no runs" in err and "MISSING: b1 seed 3" in err
    for name in ("TABLES.md", "tables.json", "fig2_dev_loss.png", "routing_moe_8e.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "routing_moe_8e.png").read_bytes()[:8] == PNG
    md = (tmp_path / "TABLES.md").read_text(encoding="utf-8")
    assert "paper column: AISHELL" in md and "4.52" in md
    assert main(["--tables-dir", str(tmp_path), "--seeds", "1", "2", "3", "--strict",
                 "--paper-columns", '{"test_ios": "AISHELL"}', "--bootstrap", "10"]) == 1


def test_a_run_decoded_through_another_graph_topology_is_not_mixed_in(tmp_path):
    """local/tables.py records the CTC topology of the lang dir's TLG with each run; runs
    recorded before that (no key) were decoded through the standard one."""
    from helpers import load_script

    script = load_script("tables")
    lang = tmp_path / "lang"
    lang.mkdir()
    args = script.get_parser().parse_args([
        "--tables-dir", str(tmp_path / "tables"), "--exp-dir", str(tmp_path / "exp"),
        "--lang-dir", str(lang), "--test-sets", "test_read"])
    (lang / "graph.json").write_text(json.dumps({"topology": "standard"}))
    settings = script.run_settings(args)
    assert settings["ctc_topology"] == "standard"
    old = {k: v for k, v in settings.items() if k != "ctc_topology"}
    run = tmp_path / "tables" / "runs" / "b1" / "seed1.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps({"settings": old}))
    script.check_finished_runs(args)  # an older record: standard, the same graph
    (lang / "graph.json").write_text(json.dumps({"topology": "compact"}))
    with pytest.raises(ValueError, match=r"seed1\.json.*ctc_topology: 'standard' there, "
                                         r"'compact' now"):
        script.check_finished_runs(args)


def test_one_list_of_the_papers_systems():
    """local/tables.py's --systems default is the paper's 7 (speechmoe/tables/paper.py), as is
    the report's."""
    from helpers import load_script

    args = load_script("tables").get_parser().parse_args(
        ["--tables-dir", "t", "--exp-dir", "e", "--test-sets", "test_read"])
    assert args.systems == list(SYSTEMS) and len(SYSTEMS) == 7
    assert get_parser().parse_args(["--tables-dir", "t"]).systems == list(SYSTEMS)


def _dev_run(tmp_path, system, seed, ter, ctc=0.05, step=100):
    from speechmoe.tables.dev import dev_run_path

    path = dev_run_path(tmp_path, system, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"system": system, "seed": seed, "epochs": [
        {"epoch": 1, "dev_greedy_ter": 90.0, "dev_ctc": 1.0, "step": step // 2},
        {"epoch": 2, "dev_greedy_ter": ter, "dev_ctc": ctc, "step": step}]}))


def test_dev_summary_spread_ratio_and_stalled_seeds_by_hand(tmp_path):
    from speechmoe.tables.dev import dev_markdown, dev_summary, load_dev_runs

    for seed, ter in zip((1, 2, 3), (10.0, 12.0, 11.0)):
        _dev_run(tmp_path, "b1", seed, ter)
    for seed, ter in zip((1, 2, 3), (11.0, 12.0, 25.0)):  # 25 > 1.5 x 11: seed 3 stalled
        _dev_run(tmp_path, "moe", seed, ter)
    s = dev_summary(load_dev_runs(tmp_path, ["b1", "moe"], [1, 2, 3]), "b1")
    assert s["b1"]["spread"] == 2.0 and s["b1"]["spread_ratio"] == 1.0
    assert s["moe"]["spread"] == 14.0 and s["moe"]["spread_ratio"] == 7.0
    assert s["moe"]["stalled_seeds"] == [3] and s["b1"]["stalled_seeds"] == []
    assert s["moe"]["ter"]["mean"] == pytest.approx(16.0)
    md = dev_markdown(s, "b1", "dev", 300)
    assert "| moe | 3 | 11.00 / 12.00 / 25.00 | 16.00 |" in md and "seed3" in md
    assert "dev (300 utterances)" in md


def test_dev_runs_missing_or_without_reference_are_errors(tmp_path):
    from speechmoe.tables.dev import dev_markdown, dev_summary, load_dev_runs
    from speechmoe.tables.runs import NoRunsError, RunFileError

    _dev_run(tmp_path, "moe", 1, 11.0)
    with pytest.raises(RunFileError, match="dev_runs/b1/seed1.json: missing"):
        load_dev_runs(tmp_path, ["b1", "moe"], [1])
    with pytest.raises(NoRunsError, match="reference system 'b1'"):
        dev_summary(load_dev_runs(tmp_path, ["moe"], [1]), "b1")
    # seeds not run (stopped for lack of time) are listed, a system with none is an error
    _dev_run(tmp_path, "b1", 1, 10.0)
    _dev_run(tmp_path, "b1", 2, 12.0)
    runs = load_dev_runs(tmp_path, ["b1", "moe"], [1, 2], allow_missing=True)
    s = dev_summary(runs, "b1", [1, 2])
    assert s["moe"]["seeds"] == [1] and s["moe"]["not_run"] == [2] and s["b1"]["not_run"] == []
    assert "Not run: moe seed2" in dev_markdown(s, "b1", "dev", 300)
    with pytest.raises(RunFileError, match="gone: no dev run"):
        load_dev_runs(tmp_path, ["b1", "gone"], [1], allow_missing=True)


def test_stored_dev_runs_lists_every_system_and_seed_of_a_tables_dir(tmp_path):
    """A call that adds seeds of one system reports every stored run (local/tables.py)."""
    from speechmoe.tables.dev import stored_dev_runs

    assert stored_dev_runs(tmp_path) == {}
    _dev_run(tmp_path, "dense_8l", 1, 7.0)
    for seed in (3, 1, 2):
        _dev_run(tmp_path, "moe", seed, 6.0)
    (tmp_path / "dev_runs" / "moe" / "seedx.json").write_text("{}")  # not a seed: ignored
    assert stored_dev_runs(tmp_path) == {"dense_8l": [1], "moe": [1, 2, 3]}


def test_step_log_summary_finds_spikes_and_the_largest_gradient(tmp_path):
    from speechmoe.tables.dev import step_log_summary

    losses = [5.0 - 0.01 * i for i in range(40)]
    losses[30] = 20.0  # more than twice the median of the 20 steps before it
    lines = [json.dumps({"step": i + 1, "loss": x, "grad_norm": 1.0 + (i == 33) * 9})
             for i, x in enumerate(losses)]
    lines.append(json.dumps({"step": 40, "loss": losses[-1], "grad_norm": 1.0}))  # a resume
    path = tmp_path / "losses.jsonl"
    path.write_text("\n".join(lines) + "\n")
    s = step_log_summary(path)
    assert s["steps"] == 40 and s["loss_spikes"] == [31]
    assert s["max_grad_norm"] == 10.0 and s["max_grad_norm_step"] == 34
    assert s["median_grad_norm"] == 1.0
