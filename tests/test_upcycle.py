"""Upcycling (--init-from): a routed model starting from a trained dense one (3M's recipe)."""

import dataclasses
import json

import pytest
import torch

from speechmoe.checkpoint import save_checkpoint
from speechmoe.config import ModelConfig, SystemConfig
from speechmoe.model import SpeechMoE
from speechmoe.model.upcycle import upcycle

SIZES = dict(input_dim=24, num_classes=11, d_model=16, num_layers=4, attention_every=2,
             ffn_dim=32, attention_heads=2, attention_ffn_dim=32)


def dense_base(seed=1, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(**{**SIZES, "num_experts": 1, "embedding_layers": 0,
                         "router_input": "previous", **kw})
    model = SpeechMoE(cfg)
    with torch.no_grad():  # away from the default init, so that a copy is told from none
        for p in model.parameters():
            p.normal_(0, 0.5)
    return cfg, model


def test_every_expert_starts_as_its_layers_dense_network():
    base_cfg, base = dense_base()
    cfg = ModelConfig(**SIZES, num_experts=3, embedding_layers=3)
    torch.manual_seed(0)
    model = SpeechMoE(cfg)
    routers = {k: v.clone() for k, v in model.state_dict().items() if ".router." in k}
    report = upcycle(model, cfg, base.state_dict(), base_cfg)
    b, m = base.state_dict(), model.state_dict()
    for layer in range(4):
        for e in range(3):
            for name in ("hidden.weight", "hidden.bias", "projection.weight"):
                assert torch.equal(m[f"backbone.moe.{layer}.experts.{e}.{name}"],
                                   b[f"backbone.moe.{layer}.experts.0.{name}"])
        assert torch.equal(m[f"backbone.memory.{layer}.lookback"],
                           b[f"backbone.memory.{layer}.lookback"])
    for key in ("input_layer.weight", "norm.weight", "output_layer.bias",
                "backbone.attention.1.qkv.weight", "backbone.moe.2.norm.bias"):
        assert torch.equal(m[key], b[key])
    # the embedding network: the base's first 3 layers, its head the base's output layer
    for layer in range(3):
        assert torch.equal(m[f"embedding.body.moe.{layer}.experts.0.hidden.weight"],
                           b[f"backbone.moe.{layer}.experts.0.hidden.weight"])
    assert torch.equal(m["embedding.input_layer.weight"], b["input_layer.weight"])
    assert torch.equal(m["embedding.ctc_head.weight"], b["output_layer.weight"])
    assert torch.equal(m["embedding.norm.weight"], b["norm.weight"])
    # the routers keep their own initialisation: the base has none
    assert all(torch.equal(m[k], v) for k, v in routers.items())
    assert sorted(report.kept) == sorted(routers)


@pytest.mark.parametrize("change,match", [
    ({"num_layers": 6}, "num_layers 6"),
    ({"attention_every": 4}, "attention_every 4"),
    ({"ffn_dim": 48}, "ffn_dim 48"),
])
def test_a_base_of_another_layout_is_refused(change, match):
    base_cfg, base = dense_base(**change)
    cfg = ModelConfig(**SIZES, num_experts=3, embedding_layers=2)
    with pytest.raises(ValueError, match=match):
        upcycle(SpeechMoE(cfg), cfg, base.state_dict(), base_cfg, "base.pt")


def test_a_routed_base_is_refused():
    cfg = ModelConfig(**SIZES, num_experts=3, embedding_layers=2)
    with pytest.raises(ValueError, match="base.pt: .*must be dense"):
        upcycle(SpeechMoE(cfg), cfg, SpeechMoE(cfg).state_dict(), cfg, "base.pt")


def test_training_starts_from_the_base_and_records_its_updates(train_params, tmp_path):
    """--init-from on a fresh run: the trainer's model is the upcycled base, and
    init_from.json records the base's updates; a resumed run does not upcycle again."""
    from speechmoe.train.trainer import Trainer

    trainer = Trainer(train_params)  # the routed system, to learn the data's sizes
    moe_cfg = trainer.system.model
    base_cfg = dataclasses.replace(moe_cfg, num_experts=1, embedding_layers=0,
                                   router_input="previous", detach_embedding=False)
    torch.manual_seed(3)
    base = SpeechMoE(base_cfg)
    path = tmp_path / "dense" / "epoch-2.pt"
    path.parent.mkdir()
    save_checkpoint(path, model=base.state_dict(), epoch=2, step=123, params={},
                    model_config=SystemConfig(model=base_cfg).to_dict())
    params = dataclasses.replace(train_params, exp_dir=str(tmp_path / "upcycled"),
                                 init_from=str(path))
    fresh = Trainer(params)
    upcycled = fresh.model.state_dict()
    want = base.state_dict()["backbone.moe.1.experts.0.hidden.weight"]
    assert all(torch.equal(upcycled[f"backbone.moe.1.experts.{e}.hidden.weight"], want)
               for e in range(moe_cfg.num_experts))
    record = json.loads((tmp_path / "upcycled" / "init_from.json").read_text())
    assert record["base_updates"] == 123 and record["checkpoint"] == str(path)
    with torch.no_grad():  # a trained-on state, then resumed: the checkpoint wins
        fresh.model.backbone.moe[1].experts[0].hidden.weight.zero_()
    fresh.save("epoch-1.pt", 1, True)
    resumed = Trainer(params).model.state_dict()
    assert torch.all(resumed["backbone.moe.1.experts.0.hidden.weight"] == 0)
    # --budget-includes-base: --max-steps counts the base's 123 updates, fresh or resumed
    counted = dataclasses.replace(params, max_steps=125, budget_includes_base=True)
    for trainer in (Trainer(counted), Trainer(dataclasses.replace(
            counted, exp_dir=str(tmp_path / "counted"), init_from=str(path)))):
        trainer.step = 1
        assert trainer.base_updates() == 123 and not trainer.budget_spent()
        trainer.step = 2
        assert trainer.budget_spent()
    assert not Trainer(dataclasses.replace(params, max_steps=125)).budget_spent()
