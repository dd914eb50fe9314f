"""run_moe_many_voices.sh (issue 36) refuses what its rules do not allow, before any run."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "egs" / "synth_mandarin" / "run_moe_many_voices.sh"


def run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def test_an_unknown_part_is_refused():
    r = run("--part", "tables")
    assert r.returncode == 1 and "unknown --part tables" in r.stderr


def test_an_upcycled_comparison_needs_its_base_named():
    r = run("--part", "compare", "--moe", "moe_8e_3m")
    assert r.returncode == 1 and "needs --upcycle-base" in r.stderr
