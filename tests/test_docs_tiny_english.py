"""The docs' first walk (docs/adding-a-corpus.md, "a tiny English corpus first"), run as
written: its bash block, verbatim, in a scratch copy of the tree. It must learn: a greedy
WER clearly below 80% on the test set, every utterance scored, the empty file reported.
About 4 minutes on 2 cores, so behind the `slow` marker (`make test-all`)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_recipe_tree, recipe_env

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding-a-corpus.md"

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None or
                                  shutil.which("sox") is None,
                                  reason="espeak-ng / sox not installed (make install)")


def walk_commands() -> str:
    """The bash block of the section, as a user would paste it."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Step by step: a tiny English corpus first", 1)[1].split("\n## ")[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_walk_is_where_the_test_looks():
    commands = walk_commands()
    assert "synth_tiny_english.py" in commands and "./run.sh" in commands


@pytest.mark.slow
@needs_espeak
def test_tiny_english_walk_learns(tmp_path):
    top = copy_recipe_tree(tmp_path / "tree", "TEMPLATE")
    shutil.copytree(ROOT / "docs", top / "docs")
    shutil.copytree(ROOT / "egs" / "synth_mandarin" / "conf",
                    top / "egs" / "synth_mandarin" / "conf")
    (top / ".venv").symlink_to(Path(sys.executable).parents[1])  # the toolkit's environment
    script = walk_commands().replace("/tmp/tiny_en", str(tmp_path / "tiny_en"))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=top, env=recipe_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    recipe = top / "egs" / "tiny_en"
    results = json.loads((recipe / "exp" / "moe_4e" / "results.json").read_text())["test"]
    refs = (recipe / "data" / "text" / "test.txt").read_text().splitlines()
    for method in ("ctc_greedy", "wfst"):
        assert results[method]["metric"] == "WER"
        assert results[method]["utterances"] == len(refs) == 20
    assert results["ctc_greedy"]["rate"] < 75, results  # the docs: 69.71
    assert results["wfst"]["rate"] < 40, results  # the docs: 25.71
    excluded = (recipe / "data" / "manifests" / "excluded_train.txt").read_text()
    assert "empty file" in excluded
