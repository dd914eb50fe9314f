"""Checkpoints: atomic writes, safe loading, resume discovery, averaging."""

import os

import pytest
import torch

from speechmoe.checkpoint import average_checkpoints, latest_checkpoint, load_checkpoint, \
    prune_step_checkpoints, save_checkpoint


def state(step, epoch, value):
    return dict(model={"w": torch.full((2,), float(value)), "n": torch.tensor(step)},
                epoch=epoch, step=step, params={}, model_config={})


def test_latest_is_the_highest_step_and_skips_damaged_files(tmp_path):
    save_checkpoint(tmp_path / "epoch-1.pt", **state(100, 1, 1))
    save_checkpoint(tmp_path / "checkpoint-150.pt", **state(150, 2, 2))
    assert latest_checkpoint(tmp_path).name == "checkpoint-150.pt"
    save_checkpoint(tmp_path / "epoch-2.pt", **state(200, 2, 3))
    assert latest_checkpoint(tmp_path).name == "epoch-2.pt"
    # a newer but truncated file is never resumed from
    good = (tmp_path / "epoch-2.pt").read_bytes()
    (tmp_path / "checkpoint-250.pt").write_bytes(good[: len(good) // 2])
    assert latest_checkpoint(tmp_path).name == "epoch-2.pt"
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "epoch-1.pt", **state(1, 1, 1))

    def boom(*a, **k):
        raise KeyboardInterrupt  # killed in the middle of writing

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "epoch-1.pt", **state(2, 1, 9))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "epoch-1.pt")["step"] == 1  # the old one is intact
    assert sorted(os.listdir(tmp_path)) == ["epoch-1.pt"]  # no temporary left behind


def test_foreign_and_tampered_checkpoints_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a speechmoe checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_average_and_prune(tmp_path):
    for i, v in enumerate([1.0, 2.0, 6.0], start=1):
        save_checkpoint(tmp_path / f"epoch-{i}.pt", **state(i, i, v))
    avg = average_checkpoints([tmp_path / f"epoch-{i}.pt" for i in (1, 2, 3)])
    assert torch.allclose(avg["w"], torch.full((2,), 3.0))
    assert int(avg["n"]) == 3  # integer tensors come from the last checkpoint
    for s in (10, 20, 30):
        save_checkpoint(tmp_path / f"checkpoint-{s}.pt", **state(s, 1, 0))
    prune_step_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pt")) == ["checkpoint-30.pt"]
