"""Training at scale, checked on the CPU: gradient accumulation, mixed precision, the
embedding network without L_e, and averaged checkpoints that follow retraining."""

import dataclasses

import pytest
import torch

from speechmoe.train.params import AMP_DTYPES
from speechmoe.train.trainer import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:Seems like `optimizer.step")


def merge(batches):
    """One batch made of several (padded to the longest)."""
    pad = torch.nn.utils.rnn.pad_sequence
    feats = [f[:n] for b in batches for f, n in zip(b["features"], b["lengths"])]
    targets = [t[:n] for b in batches for t, n in zip(b["targets"], b["target_lengths"])]
    return {"features": pad(feats, batch_first=True),
            "lengths": torch.cat([b["lengths"] for b in batches]),
            "targets": pad(targets, batch_first=True),
            "target_lengths": torch.cat([b["target_lengths"] for b in batches]),
            "cut_ids": [c for b in batches for c in b["cut_ids"]]}


def gradients_of_step(trainer, batches):
    """Run one train_step and return the gradients it would apply (no update)."""
    grads = {}

    def capture():
        for name, p in trainer.model.named_parameters():
            if p.grad is not None:
                grads[name] = p.grad.detach().clone()

    trainer.optimizer.step = capture
    result = trainer.train_step(batches, epoch=1)
    assert result is not None
    return result, grads


@pytest.fixture
def two_batches(train_params):
    trainer = Trainer(dataclasses.replace(train_params, max_duration=6.0))
    it = iter(trainer.loader)
    return [next(it), next(it)]


def test_accumulated_parts_give_the_update_of_their_union(train_params, two_batches):
    """CTC, L_e and L_s are sums over frames: accumulating two parts gives the gradient
    of one batch made of both (beta 0 here: L_m is per part by design, see train_step)."""
    overrides = {**train_params.model_overrides}
    params = dataclasses.replace(train_params, model_overrides=overrides, grad_clip=1e9)
    trainer = Trainer(params)
    trainer.system.loss.beta = 0.0
    trainer.model.double()  # float64: the two sums differ only in their order
    two_batches = [{**b, "features": b["features"].double()} for b in two_batches]
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    (loss_a, parts_a), grads_a = gradients_of_step(trainer, two_batches)
    trainer.model.load_state_dict(state)
    (loss_b, parts_b), grads_b = gradients_of_step(trainer, [merge(two_batches)])
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert parts_a["sparsity"] == pytest.approx(parts_b["sparsity"], rel=1e-5)
    assert set(grads_a) == set(grads_b)
    for name in grads_a:  # relative to the gradient norm (small elements are noise)
        a, b = grads_a[name].double(), grads_b[name].double()
        assert (a - b).norm() <= 1e-5 * b.norm() + 1e-12, name


def test_accum_grad_groups_batches_into_steps(train_params):
    from speechmoe.train.trainer import accumulate

    assert [len(g) for g in accumulate(range(7), 3)] == [3, 3, 1]
    with pytest.raises(ValueError, match="accum-grad"):
        Trainer(dataclasses.replace(train_params, accum_grad=0))
    with pytest.raises(ValueError, match="amp"):
        Trainer(dataclasses.replace(train_params, amp="fp8"))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_step_keeps_router_and_losses_in_fp32(train_params, two_batches, amp):
    trainer = Trainer(dataclasses.replace(train_params, amp=amp))
    out, loss, parts = trainer.forward_loss(two_batches[0])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # the output layer's logits in the autocast dtype; the loss reads their log-softmax
    # in fp32 (speechmoe.losses.gathered_log_softmax), no (B, T, C) log-probs made
    assert out.logits.dtype == AMP_DTYPES[amp] and out.log_probs.numel() == 0
    assert all(r.probs.dtype == torch.float32 for r in out.routing)
    assert (trainer.scaler is not None) == (amp == "fp16")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    result = trainer.train_step(two_batches[:1], epoch=1)
    assert result is not None and torch.isfinite(torch.tensor(result[0]))
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())]
    assert sum(changed) > len(changed) // 2
    ckpt = trainer.state(1, False)
    assert bool(ckpt["grad_scaler"]) == (amp == "fp16")


def test_embedding_network_without_its_loss_freezes_only_its_ctc_head(train_params,
                                                                       two_batches):
    trainer = Trainer(train_params)
    trainer.system.loss.gamma = 0.0
    trainer.embedding_loss = False
    trainer.model.embedding.ctc_head.requires_grad_(False)
    _, grads = gradients_of_step(trainer, two_batches[:1])
    assert not any(n.startswith("embedding.ctc_head") for n in grads)
    assert any(n.startswith("embedding.body") for n in grads)  # trained through routers
    # a fresh trainer does the freezing itself
    params = dataclasses.replace(train_params, model_overrides={
        **train_params.model_overrides})
    import yaml

    cfg = yaml.safe_load(open(params.model_config))
    cfg["loss"]["gamma"] = 0.0
    path = params.exp_dir + ".yaml"
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    t2 = Trainer(dataclasses.replace(params, model_config=path))
    assert not any(p.requires_grad for p in t2.model.embedding.ctc_head.parameters())


def test_an_embedding_network_nothing_reads_is_refused():
    from speechmoe.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="used by nothing"):
        config_from_dict({"model": {"router_input": "previous", "embedding_layers": 2,
                                    "num_layers": 2, "attention_every": 2},
                          "loss": {"gamma": 0.0}})


def test_an_averaged_model_is_rebuilt_when_its_epochs_change(tmp_path):
    import os

    from speechmoe.checkpoint import load_checkpoint, save_checkpoint
    from speechmoe.checkpoint import checkpoint_for_decoding

    def epoch(n, value):
        save_checkpoint(tmp_path / f"epoch-{n}.pt", model={"w": torch.full((2,), value)},
                        epoch=n, step=n, params={}, model_config={})

    epoch(1, 1.0)
    epoch(2, 3.0)
    avg = checkpoint_for_decoding(tmp_path, 0, 2)
    assert load_checkpoint(avg)["model"]["w"].tolist() == [2.0, 2.0]
    mtime = os.stat(avg).st_mtime_ns
    assert checkpoint_for_decoding(tmp_path, 0, 2) == avg and os.stat(avg).st_mtime_ns == mtime
    epoch(2, 5.0)  # retrained in the same directory
    avg = checkpoint_for_decoding(tmp_path, 0, 2)
    assert load_checkpoint(avg)["model"]["w"].tolist() == [3.0, 3.0]


def test_max_steps_ends_training_mid_epoch_and_a_rerun_adds_none(train_params):
    """--max-steps: the epoch in progress ends at the budget (validated, saved as an epoch
    checkpoint, its record marked); rerunning the command trains no further."""
    import json
    from pathlib import Path

    from speechmoe.checkpoint import epoch_checkpoints, load_checkpoint
    from speechmoe.train.trainer import train

    params = dataclasses.replace(train_params, num_epochs=5, max_steps=4, save_every_n=0,
                                 valid_every_n=2)
    train(params)
    exp = Path(params.exp_dir)
    epochs = [json.loads(x) for x in (exp / "log" / "epochs.jsonl").read_text().splitlines()]
    assert epochs[-1]["step"] == 4 and epochs[-1]["max_steps_reached"] is True
    # --valid-every-n 2: dev measured at update 2 mid-run (update 4 is the run's end)
    valid = [json.loads(x) for x in (exp / "log" / "valid.jsonl").read_text().splitlines()]
    assert [v["step"] for v in valid] == [2]
    assert valid[0]["dev_greedy_ter"] >= 0 and valid[0]["dev_ctc"] > 0
    assert all("max_steps_reached" not in e for e in epochs[:-1])
    last = epoch_checkpoints(exp)[epochs[-1]["epoch"]]
    assert load_checkpoint(last)["step"] == 4
    train(params)
    again = (exp / "log" / "epochs.jsonl").read_text().splitlines()
    assert len(again) == len(epochs)
    assert "training finished: %d epochs, 4 steps (--max-steps 4)" % epochs[-1]["epoch"] in (
        exp / "log" / "train.log").read_text()


def test_routing_frozen_from_an_update_on_and_churn_recorded(train_params):
    """--freeze-routing-after 2: from update 2 on the routers and the embedding network do
    not change (the rest of the model does), a resumed run freezes them again; every
    validation after the first records the share of dev frames that changed expert."""
    import json
    from pathlib import Path

    from speechmoe.model.moe import MoELayer
    from speechmoe.train.trainer import train

    params = dataclasses.replace(train_params, num_epochs=1, max_steps=2, save_every_n=0,
                                 freeze_routing_after=2, valid_every_n=1)
    train(params)
    params = dataclasses.replace(params, num_epochs=2, max_steps=4)
    trainer = Trainer(params)  # resumes at update 2: frozen again
    routing = [p for m in trainer.model.modules() if isinstance(m, MoELayer) and m.router
               for p in m.router.parameters()] + list(trainer.model.embedding.parameters())
    assert routing and not any(p.requires_grad for p in routing)
    before = [p.detach().clone() for p in routing]
    other = trainer.model.output_layer.weight.detach().clone()
    trainer.run()
    assert trainer.step == 4
    assert all(torch.equal(a, b) for a, b in zip(before, routing))
    assert not torch.equal(other, trainer.model.output_layer.weight)
    assert "routing frozen" in (Path(params.exp_dir) / "log" / "train.log").read_text()
    log = Path(params.exp_dir) / "log"
    # L_e, a function of frozen parameters only from update 2 on, is no longer computed
    steps = [json.loads(x) for x in (log / "losses.jsonl").read_text().splitlines()]
    assert [("embedding_ctc" in r) for r in steps] == [True, True, False, False]
    assert not trainer.embedding_loss and trainer.loss_config.gamma == 0.0
    records = sorted((json.loads(x) for f in ("valid.jsonl", "epochs.jsonl")
                      for x in (log / f).read_text().splitlines()), key=lambda r: r["step"])
    # a process's first validation has nothing to compare with (steps 1 and 3 here)
    assert [r["step"] for r in records if "dev_routing_churn" in r] == [2, 4]
    assert all(0.0 <= r.get("dev_routing_churn", 0) <= 1.0 for r in records)


def test_routing_churn_by_hand():
    from speechmoe.train.validate import RoutingChurn

    c = RoutingChurn()
    assert c.update(None) is None
    assert c.update(torch.tensor([[0, 1, 2, 3]])) is None
    assert c.update(torch.tensor([[0, 1, 3, 3]])) == 0.25
    assert c.update(torch.tensor([[1, 0, 0, 0]])) == 1.0


def test_num_workers_default_loads_in_the_training_process_on_a_cpu():
    from speechmoe.data.sampling import resolve_num_workers
    from speechmoe.train.params import TrainParams

    auto = TrainParams.__dataclass_fields__["num_workers"].default
    assert resolve_num_workers(auto, torch.device("cpu")) == 0
    assert resolve_num_workers(auto, torch.device("cuda", 0)) == 1
    assert resolve_num_workers(3, torch.device("cpu")) == 3
    assert resolve_num_workers(0, torch.device("cuda", 0)) == 0
