"""tools/gpu_check.sh (make gpu-check) run on the CPU: every step runs and the summary
names what it measured. Slow (the toy corpus, paper-scale step benchmark, a short training
under torchrun): `make test-all`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                 reason="espeak-ng / sox not installed (make install)")]


def test_gpu_check_runs_its_steps_on_the_cpu(tmp_path):
    if not (ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("needs the repository's .venv (make install)")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(
        [str(ROOT / "tools" / "gpu_check.sh"), "--device", "cpu", "--amp", "none", "--out",
         str(tmp_path), "--epochs", "4", "--model-overrides",
         '{"num_layers": 4, "embedding_layers": 2, "attention_every": 2, "d_model": 128, '
         '"ffn_dim": 256, "attention_ffn_dim": 256}'],
        env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith("device: cpu")
    assert "cuda tests: " in summary and "skipped" in summary
    assert "step_time_ratio=" in summary
    assert "moe_8e training:" in summary and "non-finite at steps none" in summary
    assert (tmp_path / "moe_8e_none" / "epoch-4.pt").is_file()
    # the trained model is the paper's MoE-8e with the overrides: 8 experts per layer
    assert '"num_experts": 8' in (tmp_path / "moe_8e_none" / "params.json").read_text()
