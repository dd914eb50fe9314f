"""The front-end study's report (egs/synth_mandarin/results/frontend/frontend.py): step 1's
choice with its tie rule and step 2's decision, on hand-made run records."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "egs" / "synth_mandarin" / "results" / "frontend" / "frontend.py"


def fake_run(runs: Path, cand: str, seed: int, errors: list[int], chars: int = 10):
    """A collected run whose dev_unseen utterances have these errors of `chars` each."""
    d = runs / f"{cand}_seed{seed}"
    d.mkdir(parents=True)
    n = len(errors)
    cer = 100 * sum(errors) / (n * chars)
    sets = ["dev_unseen", "dev", "test_read", "test_chat", "test_spon"]
    results = {s: {"wfst": {"metric": "CER", "rate": round(cer, 2), "utterances": n,
                            "ref_tokens": n * chars}} for s in sets}
    detail = {s: {"ctc_greedy": {"toned_syllable_er": 1.0}} for s in sets}
    (d / "results.json").write_text(json.dumps(results))
    (d / "results_detail.json").write_text(json.dumps(detail))
    (d / "run.json").write_text(json.dumps({"candidate": cand, "seed": seed, "features": {},
                                            "corpus": {"version": 2}}))
    utts = {"dev_unseen": {"wfst": [[f"u{i}", e, chars] for i, e in enumerate(errors)]}}
    with gzip.open(d / "utts.json.gz", "wt") as f:
        json.dump(utts, f)


def report(runs: Path) -> dict:
    r = subprocess.run([sys.executable, str(SCRIPT), "report", "--runs", str(runs), "--out",
                        str(runs.parent)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads((runs.parent / "frontend.json").read_text())


def test_step1_waits_for_every_candidate_then_prefers_fewer_bands_within_the_tie(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "mel40_pitch", 42, [1] * 10)          # 10.0%
    fake_run(runs, "mel40", 42, [3] * 10)                # 30.0%
    got = report(runs)
    assert got["decision"]["step1"] is None
    assert got["decision"]["not_run"] == ["mel80", "mel120"]
    assert got["candidates"]["mel80"] == {"not_run": True}
    fake_run(runs, "mel80", 42, [2] * 9 + [1])           # 19.0%
    fake_run(runs, "mel120", 42, [2] * 9 + [0])          # 18.0%: 1 point better
    assert report(runs)["decision"]["step1"] == "mel120"
    import shutil  # mel120 re-collected: now within 0.1 of mel80
    shutil.rmtree(runs / "mel120_seed42")
    fake_run(runs, "mel120", 42, [2] * 9 + [1])          # 19.0%: a tie, mel80 kept
    assert report(runs)["decision"]["step1"] == "mel80"


def test_step2_adopts_within_the_reference_seed_std_or_0_3_points(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "mel40", 42, [5] * 10)
    fake_run(runs, "mel120", 42, [5] * 10)
    # reference seeds 10.0 / 12.0 / 14.0 (std 2.0); mel80 11.0 / 13.0 / 15.0: gap +1.0
    for seed, e in zip((42, 43, 44), (10, 12, 14)):
        fake_run(runs, "mel40_pitch", seed, [1] * e + [0] * (100 - e), chars=1)
    for seed, e in zip((42, 43, 44), (11, 13, 15)):
        fake_run(runs, "mel80", seed, [1] * e + [0] * (100 - e), chars=1)
    got = report(runs)
    step2 = got["decision"]["step2"]
    assert got["decision"]["step1"] == "mel80"
    assert step2["candidate"] == "mel80" and abs(step2["gap_points"] - 1.0) < 1e-9
    assert abs(step2["allowed_points"] - 2.0) < 1e-9 and step2["adopt"] is True
    # pooled: 39 errors against 36 over the same 300 characters
    assert abs(step2["bootstrap"]["rel_change"] - 3 / 36) < 1e-9
    assert got["candidates"]["mel40_pitch"]["std"] == 2.0
    assert "becomes the recipe's default" in (tmp_path / "FRONTEND.md").read_text()

    import shutil  # the same reference, mel80 now 3 points worse: beyond its std of 2.0
    for seed, e in zip((42, 43, 44), (14, 16, 15)):
        shutil.rmtree(runs / f"mel80_seed{seed}")
        fake_run(runs, "mel80", seed, [1] * (e + 1) + [0] * (99 - e), chars=1)
    step2 = report(runs)["decision"]["step2"]
    assert abs(step2["gap_points"] - 4.0) < 1e-9 and step2["adopt"] is False
    assert "pitch stays" in (tmp_path / "FRONTEND.md").read_text()


def test_step3_chooses_the_device_model_when_pitch_stays(tmp_path):
    """RULE.md's addendum: D (P distilled) must beat A's (P's) 3-seed mean by > 0.1 points,
    at seed 42 first, then over 3 seeds; otherwise A, which needs no teacher."""
    import shutil

    runs = tmp_path / "runs"
    fake_run(runs, "mel40", 42, [5] * 10)
    fake_run(runs, "mel120", 42, [5] * 10)
    for seed, e in zip((42, 43, 44), (10, 10, 10)):  # reference 10.0, std 0
        fake_run(runs, "mel40_pitch", seed, [1] * e + [0] * (100 - e), chars=1)
    for seed, e in zip((42, 43, 44), (13, 14, 15)):  # A: mean 14.0, 4 points worse
        fake_run(runs, "mel80", seed, [1] * e + [0] * (100 - e), chars=1)
    step3 = report(runs)["decision"]["step3"]
    assert step3 == {"A": "mel80", "D": "mel80_distill", "A_mean": 14.0, "device_model": None}
    # 3a: 13.95 is below 14.0 by only 0.05: A, and 3b is not run
    fake_run(runs, "mel80_distill", 42, [1] * 1395 + [0] * 8605, chars=1)
    got = report(runs)
    assert got["decision"]["step3"]["device_model"] == "mel80"
    assert got["candidates"]["mel80_distill"]["seeds"] == [42]
    assert "step 3b is not run" in (tmp_path / "FRONTEND.md").read_text()
    # 3a passed (12.0): 3b waits for two more seeds, then takes the 3-seed mean
    shutil.rmtree(runs / "mel80_distill_seed42")
    fake_run(runs, "mel80_distill", 42, [1] * 12 + [0] * 88, chars=1)
    assert report(runs)["decision"]["step3"]["device_model"] is None
    fake_run(runs, "mel80_distill", 43, [1] * 13 + [0] * 87, chars=1)
    fake_run(runs, "mel80_distill", 44, [1] * 17 + [0] * 83, chars=1)  # mean 14.0: A
    step3 = report(runs)["decision"]["step3"]
    assert step3["D_mean"] == 14.0 and step3["device_model"] == "mel80"
    shutil.rmtree(runs / "mel80_distill_seed44")
    fake_run(runs, "mel80_distill", 44, [1] * 14 + [0] * 86, chars=1)  # mean 13.0: D
    assert report(runs)["decision"]["step3"]["device_model"] == "mel80_distill"
