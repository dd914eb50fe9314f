"""tools/parse_options.sh: the Kaldi option contract recipes rely on."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
stage=0
stop_stage=6
tiny=false
model=moe_4e
help_message="usage: demo"
. {root}/tools/parse_options.sh
echo "$stage $stop_stage $tiny $model | $*"
"""


def run(*args):
    return subprocess.run(["bash", "-c", SCRIPT.format(root=ROOT), "demo", *args],
                          capture_output=True, text=True)


def test_options_set_variables_and_keep_positionals():
    r = run("--stage", "3", "--stop-stage=5", "--tiny", "true", "--model", "b1", "x", "y")
    assert r.returncode == 0 and r.stdout.strip() == "3 5 true b1 | x y"


def test_unknown_option_missing_value_and_bad_boolean_are_errors():
    r = run("--bogus", "1")
    assert r.returncode != 0 and "unknown option --bogus" in r.stderr
    r = run("--stage")
    assert r.returncode != 0 and "needs a value" in r.stderr
    r = run("--tiny", "yes")
    assert r.returncode != 0 and "true or false" in r.stderr


def test_help_prints_the_message():
    r = run("--help")
    assert r.returncode == 0 and r.stdout.strip() == "usage: demo"
