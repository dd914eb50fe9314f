"""The recipes' variables: every default lives in tools/asr_defaults.sh, a run.sh sets only
what differs from it. Each recipe is resolved in a scratch copy whose tools/asr_stages.sh
runs the real one's set-up but no stage and dumps the variables; `python` is a stub, so
stage 0 does nothing either (a fraction of a second per recipe)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("synth_mandarin", "aishell2", "TEMPLATE")

# Stands in for tools/asr_stages.sh: the real one with no stage to run, then every
# lower-case shell variable that is not exported, NUL-separated, into $SPEECHMOE_DUMP.
DUMP = r"""for _dump_v in $(compgen -v); do
  case $_dump_v in [a-z]*) ;; *) continue ;; esac
  case "$(declare -p "$_dump_v")" in
    "declare -"[a-zA-Z]*x*) continue ;;
    "declare -a"*|"declare -A"*) printf '%s\0%s\0' "$_dump_v" "$(declare -p "$_dump_v")" ;;
    *) printf '%s\0%s\0' "$_dump_v" "${!_dump_v}" ;;
  esac
done > "$SPEECHMOE_DUMP"
"""
STUB = r"""_dump_stage=$stage _dump_stop=$stop_stage
stage=99 stop_stage=99
. "@REAL@"
stage=$_dump_stage stop_stage=$_dump_stop
unset _dump_stage _dump_stop
""" + DUMP + "exit 0\n"


def read_dump(path: Path) -> dict:
    parts = path.read_text().split("\0") if path.exists() else []
    return dict(zip(parts[0:-1:2], parts[1::2]))


def resolve(scratch: Path, recipe: str, *args):
    """egs/<recipe>/run.sh ARGS in a scratch tree: (completed process, {variable: value})."""
    top = scratch / f"tree_{recipe}"
    if top.exists():
        shutil.rmtree(top)
    (top / "tools").mkdir(parents=True)
    for f in (ROOT / "tools").glob("*.sh"):
        shutil.copy2(f, top / "tools")
    (top / "tools" / "asr_stages.sh").write_text(
        STUB.replace("@REAL@", str(ROOT / "tools" / "asr_stages.sh")))
    rdir = top / "egs" / recipe
    (rdir / "conf" / "model").mkdir(parents=True)
    for name in ("moe_4e", "b1"):
        (rdir / "conf" / "model" / f"{name}.yaml").write_text("")
    for f in ("run.sh", "path.sh", "db.sh"):
        if (ROOT / "egs" / recipe / f).exists():
            shutil.copy2(ROOT / "egs" / recipe / f, rdir)
    fakebin = top / "bin"
    fakebin.mkdir()
    (fakebin / "python").write_text("#!/bin/sh\nexit 0\n")
    (fakebin / "python").chmod(0o755)
    dump = top / "dump"
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
           "CORPUS": "/corpus/kaldi", "AISHELL2": "/corpus/aishell2",
           "SPEECHMOE_DUMP": str(dump)}
    r = subprocess.run(["./run.sh", *args], cwd=rdir, env=env, capture_output=True, text=True)
    return r, read_dump(dump)


def values(scratch, recipe, *args) -> dict:
    r, v = resolve(scratch, recipe, *args)
    assert r.returncode == 0 and v, f"run.sh {' '.join(args)}: {r.stderr}"
    return v


def shared_defaults(scratch: Path) -> dict:
    dump = scratch / "defaults_dump"
    script = f'. "{ROOT}/tools/asr_defaults.sh"\n' + DUMP
    r = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin",
                       "SPEECHMOE_DUMP": str(dump)}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return read_dump(dump)


def run_sh_assignments(recipe: str):
    """Names run.sh assigns before parse_options: (its own values, its --tiny block's)."""
    text = (ROOT / "egs" / recipe / "run.sh").read_text()
    head = text.split(". ../../tools/asr_defaults.sh", 1)[1].split(
        ". ../../tools/parse_options.sh", 1)[0]
    tiny = re.search(r"^if \$tiny; then\n(.*?)^fi$", head, re.S | re.M)
    tiny_block = tiny.group(1) if tiny else ""
    if tiny:
        head = head.replace(tiny.group(0), "")
    own = re.findall(r"^([a-z_][a-z0-9_]*)=", head, re.M)
    tiny_names = re.findall(r"(?:^|;)\s*([a-z_][a-z0-9_]*)=", tiny_block, re.M)
    return own, tiny_names


# --------------------------------------------------------------------------- the values

EXPECTED = {
    "synth_mandarin": dict(
        model="moe_4e", num_epochs="4", max_duration="120", num_buckets="", lr="0.002",
        warmup_steps="300",
        save_every_n="200", avg="2", nj="2", num_rirs="200", heldout_rirs="20",
        rvb_fraction="0", pitch="true", aug_copies="1", tempo_perturb="1.0,1.1,1.2,1.3",
        speed_perturb="0.9,1.0,1.1", lm_order="3", lm_prune="0", open_vocabulary="uniform",
        unit_type="syllable", num_workers="", dev_set="dev_unseen",
        test_sets="dev dev_unseen test_read test_chat test_spon", degrade_sets="test_spon",
        dev_degrade_sets="dev_spon", tune_sets="dev_unseen dev_spon", num_train="12000",
        utts_per_speaker="30", num_dev="300", dev_utts_per_speaker="10",
        train_sets="train train_aug", lm_text="data/text/lm_text.txt", exp_dir="exp/moe_4e",
        beam="16", acoustic_scales="0.7,1.0,1.4,2.0,2.8"),
    "aishell2": dict(
        model="moe_4e", num_epochs="10", max_duration="300", lr="0.001", warmup_steps="5000",
        save_every_n="2000", avg="3", nj="8", num_rirs="1000", heldout_rirs="0",
        rvb_fraction="0.5", pitch="false", aug_copies="0", lm_order="5", lm_prune="1e-7",
        open_vocabulary="freq", num_workers="4", unit_type="syllable", dev_set="train_dev",
        test_sets="dev_ios test_ios", degrade_sets="", tune_sets="train_dev", num_dev="1500",
        train_sets="train train_rvb", corpus_dir="/corpus/aishell2"),
    "TEMPLATE": dict(
        model="moe_4e", num_epochs="10", max_duration="200", lr="0.001", warmup_steps="1000",
        save_every_n="1000", avg="3", nj="2", num_rirs="200", rvb_fraction="0.5",
        unit_type="bpe", bpe_vocab_size="500", text_norm="lower", num_workers="",
        train_set="train", dev_set="dev", test_sets="test", tune_sets="dev",
        corpus_dir="/corpus/kaldi"),
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_values(recipe, tmp_path):
    v = values(tmp_path, recipe)
    assert {k: v.get(k) for k in EXPECTED[recipe]} == EXPECTED[recipe]
    v = values(tmp_path, recipe, "--model", "b1", "--num-epochs", "7")
    assert (v["model"], v["num_epochs"], v["exp_dir"]) == ("b1", "7", "exp/b1")


def test_tiny_sizes_and_explicit_options_win(tmp_path):
    v = values(tmp_path, "synth_mandarin", "--tiny", "true")
    assert (v["num_train"], v["num_epochs"], v["lr"], v["beam"], v["lm_cutoffs"]) == \
        ("300", "30", "0.003", "10", "0,2")
    # what the tiny block leaves alone keeps the recipe's value
    assert (v["avg"], v["save_every_n"], v["rvb_fraction"], v["aug_copies"]) == \
        ("2", "200", "0", "1")
    v = values(tmp_path, "synth_mandarin", "--tiny", "true", "--beam", "13")
    assert (v["beam"], v["num_epochs"]) == ("13", "30")
    v = values(tmp_path, "synth_mandarin", "--tiny=true", "--num-epochs", "5")
    assert (v["num_epochs"], v["num_train"]) == ("5", "300")
    for recipe in ("aishell2", "TEMPLATE"):      # --tiny is the embedded recipe's alone
        r, _ = resolve(tmp_path, recipe, "--tiny", "true")
        assert r.returncode != 0 and "unknown option --tiny" in r.stderr


# --------------------------------------------------------------------------- one place each


@pytest.mark.parametrize("recipe", RECIPES)
def test_run_sh_sets_only_what_differs(recipe, tmp_path):
    defaults = shared_defaults(tmp_path)
    own, tiny_names = run_sh_assignments(recipe)
    assert own, "no assignment found between asr_defaults.sh and parse_options.sh"
    v = values(tmp_path, recipe)
    same = [f"{n}={v[n]}" for n in own if n in defaults and v[n] == defaults[n]]
    assert not same, f"egs/{recipe}/run.sh repeats tools/asr_defaults.sh: {same}"
    if tiny_names:
        t = values(tmp_path, recipe, "--tiny", "true")
        same = [f"{n}={t[n]}" for n in tiny_names if t[n] == v[n]]
        assert not same, f"egs/{recipe}/run.sh's --tiny block repeats its own values: {same}"


def test_stages_read_no_variable_without_a_default(tmp_path):
    defaults = shared_defaults(tmp_path)
    text = (ROOT / "tools" / "asr_stages.sh").read_text()
    code = "\n".join(line.split(" #", 1)[0] for line in text.splitlines()
                     if not line.lstrip().startswith("#"))
    read = set(re.findall(r"\$\{?([a-z_][a-z0-9_]*)", code))
    assigned = set(re.findall(r"\b([a-z_][a-z0-9_]*)=", code)) | \
        set(re.findall(r"\bfor ([a-z_][a-z0-9_]*) in", code))
    assert read - assigned - set(defaults) == set()
    # a default in asr_stages.sh (${var:-x}) only where asr_defaults.sh documents it
    documented = (ROOT / "tools" / "asr_defaults.sh").read_text()
    for name, fallback in re.findall(r"\$\{([a-z_][a-z0-9_]*):-([^}]+)\}", code):
        assert f"[empty: {fallback}]" in documented, (name, fallback)


def test_stages_without_the_defaults_say_so():
    r = subprocess.run(["bash", "-c", f'set -u; . "{ROOT}/tools/asr_stages.sh"'],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "tools/asr_defaults.sh" in r.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_every_option_with_the_recipe_value(recipe, tmp_path):
    r, _ = resolve(tmp_path, recipe, "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: ")
    lines = r.stdout.splitlines()
    assert f"  --num-epochs {EXPECTED[recipe]['num_epochs']}" in lines
    assert f"  --lm-order {values(tmp_path, recipe)['lm_order']}" in lines
    for name in shared_defaults(tmp_path):
        assert any(line.startswith(f"  --{name.replace('_', '-')} ") for line in lines), name
    if recipe == "synth_mandarin":
        r, _ = resolve(tmp_path, recipe, "--tiny", "true", "--help")
        assert "  --num-epochs 30" in r.stdout.splitlines()
