"""Packaging: a light import, the benchmark's output contract."""

import subprocess
import sys


def test_import_speechmoe_is_light():
    code = ("import sys, speechmoe, speechmoe.config, speechmoe.info; "
            "heavy = [m for m in ('torch', 'lhotse', 'kaldifeat', 'kaldifst', 'k2') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_model_import_pulls_no_optional_dependency():
    code = ("import sys, speechmoe.model, speechmoe.losses, speechmoe.features; "
            "print([m for m in ('lhotse', 'kaldifeat', 'kaldifst', 'kaldi_decoder', 'k2') "
            "if m in sys.modules])")
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
