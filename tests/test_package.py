"""Packaging: a light import, the benchmark's output contract."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules,forbidden", [
    # `import speechmoe` and the config / info tools stay light: not even torch
    ("speechmoe, speechmoe.config, speechmoe.info",
     ("torch", "lhotse", "kaldifeat", "kaldifst", "k2")),
    # the model needs torch, but no optional speech package
    ("speechmoe.model, speechmoe.losses, speechmoe.features",
     ("lhotse", "kaldifeat", "kaldifst", "kaldi_decoder", "k2")),
    # graphs and decoders import their FST packages (and torch) only when used
    ("speechmoe.lang.graph, speechmoe.decode.wfst, speechmoe.decode.greedy",
     ("torch", "kaldifst", "kaldi_decoder", "kaldilm")),
])
def test_imports_pull_in_no_heavy_dependency(modules, forbidden):
    code = (f"import sys, {modules}; "
            f"print([m for m in {forbidden!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_benchmark_prints_its_ratio_last():
    out = subprocess.run(
        [sys.executable, "-m", "speechmoe.bench.moe_layer", "--frames", "256", "--d-model",
         "32", "--hidden", "64", "--repeats", "2", "--experts", "4"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()
    key, value = out[-1].split("=")
    assert key == "moe_vs_dense_ratio" and float(value) > 0
