"""The training step's kernels chosen at run time (speechmoe.train.step_kernels): a kernel
made slower on purpose is not chosen, the choice is cached per machine, and the trainer
trains with what was chosen."""

import logging
import time

import pytest
import torch

from speechmoe.config import load_config
from speechmoe.model.memory import MemoryBlock
from speechmoe.train import step_kernels
from speechmoe.train.step_kernels import StepKernels, choose


@pytest.fixture
def system(tmp_path):
    import yaml

    cfg = {"name": "moe", "model": {"input_dim": 160, "d_model": 32, "ffn_dim": 64,
                                    "attention_ffn_dim": 64, "attention_heads": 2,
                                    "num_layers": 2, "attention_every": 2, "num_experts": 4,
                                    "embedding_layers": 2, "num_classes": 30}}
    path = tmp_path / "moe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def slow_when(channels_last: bool, monkeypatch, seconds: float = 0.03):
    """Every memory block sleeps `seconds` when its kernel is the one named."""
    forward = MemoryBlock.forward

    def slowed(self, *args, **kwargs):
        if self.channels_last == channels_last:
            time.sleep(seconds)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(MemoryBlock, "forward", slowed)


@pytest.mark.parametrize("slow_kernel", [True, False])
def test_a_kernel_made_slower_is_not_chosen(system, monkeypatch, tmp_path, caplog, slow_kernel):
    monkeypatch.setenv("SPEECHMOE_CACHE", str(tmp_path))
    slow_when(slow_kernel, monkeypatch)
    log = logging.getLogger("test-step-kernels")
    with caplog.at_level(logging.INFO, logger="test-step-kernels"):
        kernels = choose(system, "cpu", "none", None, 4.0, log,
                         measured=("channels_last",), steps=2)
    assert kernels.channels_last is not slow_kernel
    assert kernels.fused_update and kernels.ctc_from_logits and kernels.batched_routing
    assert "measured here" in caplog.text and "channels_last" in caplog.text
    # cached for this machine and run size: the second call measures nothing
    monkeypatch.setattr(step_kernels, "measure", lambda *a, **k: pytest.fail("measured"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test-step-kernels"):
        assert choose(system, "cpu", "none", None, 4.0, log,
                      measured=("channels_last",)) == kernels
    assert "measured on this machine before" in caplog.text
    # another batch size is another key: measured again
    with pytest.raises(pytest.fail.Exception):
        choose(system, "cpu", "none", None, 8.0, log, measured=("channels_last",))


def test_default_mode_measures_nothing(system, monkeypatch):
    monkeypatch.setattr(step_kernels, "measure", lambda *a, **k: pytest.fail("measured"))
    log = logging.getLogger("test-step-kernels")
    assert choose(system, "cpu", "none", None, 4.0, log, mode="default") == StepKernels()
    with pytest.raises(ValueError, match="--step-kernels 'fast'"):
        choose(system, "cpu", "none", None, 4.0, log, mode="fast")


def test_every_kernel_setting_trains_alike(system):
    """The four kernels change how the step computes, not what: the same losses, fp32."""
    torch.set_num_threads(1)
    runs = []
    for kernels in (StepKernels(), StepKernels(False, False, False, False)):
        s = step_kernels._Stepper(system, torch.device("cpu"), None, kernels, 3.0)
        s.optimizer.param_groups[0]["lr"] = 1e-3
        losses = []
        for _ in range(5):
            s.step()
            losses.append(float(s.last_loss))
        runs.append(losses)
    assert runs[0] == pytest.approx(runs[1], rel=1e-4)
