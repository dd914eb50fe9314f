"""Start a routed model from a trained dense one ("upcycling", the authors' 3M recipe).

The authors' later toolkit (tencent-ailab/3m-asr) does not train its MoE models from
scratch: it trains a dense base, copies the base's feed-forward layer into every expert of
the same layer, and loads the embedding network from a trained dense network. Here one
dense checkpoint (num_experts 1, no embedding network; e.g. conf/model/dense_8l.yaml at
MoE-8e's backbone depth) gives:

  backbone      input layer, layer norms, memory blocks, attention layers, output layer:
                the base's, tensor for tensor; expert i of MoE layer l: a copy of the base's
                layer-l feed-forward network, for every i
  routers       their own initialisation (model.router_init_gain): the base has none
  embedding     its input layer, feed-forward layers and memory blocks from the base's,
  network       layer by layer (its depth may not exceed the base's); its final norm and
                CTC head from the base's norm and output layer; the base's attention
                layers only where the embedding network has them too

The base must have the backbone's layout (depth, attention positions) and every copied
tensor the same shape; anything else is an error naming the tensor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from speechmoe.config import ModelConfig

_EXPERT = re.compile(r"^(backbone\.moe\.\d+\.experts\.)\d+\.")
_EMBEDDING = (("embedding.body.", "backbone."), ("embedding.input_layer.", "input_layer."),
              ("embedding.norm.", "norm."), ("embedding.ctc_head.", "output_layer."))


@dataclass
class UpcycleReport:
    copied: dict[str, str] = field(default_factory=dict)  # target key -> base key
    kept: list[str] = field(default_factory=list)  # target keys left at their init

    def summary(self) -> str:
        experts = sum(1 for k in self.copied if _EXPERT.match(k))
        return (f"{len(self.copied)} tensors copied from the base ({experts} of them into "
                f"experts), {len(self.kept)} kept at their initialisation: "
                + (", ".join(sorted({re.sub(r"\.\d+\.", ".N.", k) for k in self.kept}))
                   or "none"))


def base_key(key: str) -> str:
    """The base model's tensor a target tensor starts from."""
    for prefix, base in _EMBEDDING:
        if key.startswith(prefix):
            return base + key[len(prefix):]
    return _EXPERT.sub(r"\g<1>0.", key)


def check_base(model_cfg: ModelConfig, base_cfg: ModelConfig) -> None:
    problems = []
    if base_cfg.num_experts != 1 or base_cfg.embedding_layers != 0:
        problems.append(f"the base must be dense (num_experts 1, embedding_layers 0), it has "
                        f"{base_cfg.num_experts} experts and {base_cfg.embedding_layers} "
                        "embedding layers")
    for name in ("num_layers", "attention_every", "d_model", "ffn_dim", "input_dim",
                 "num_classes"):
        if getattr(base_cfg, name) != getattr(model_cfg, name):
            problems.append(f"{name} {getattr(base_cfg, name)} (the model's: "
                            f"{getattr(model_cfg, name)})")
    if model_cfg.embedding_layers > base_cfg.num_layers:
        problems.append(f"{model_cfg.embedding_layers} embedding layers, deeper than the "
                        f"base's {base_cfg.num_layers}")
    if problems:
        raise ValueError("the base does not fit this model: " + "; ".join(problems))


@torch.no_grad()
def upcycle(model: torch.nn.Module, model_cfg: ModelConfig, base_state: dict,
            base_cfg: ModelConfig, where: str = "base") -> UpcycleReport:
    """Copy a dense model's tensors into `model` (a SpeechMoE of config model_cfg) in
    place, as the module docstring says; returns what was copied and what was kept."""
    try:
        check_base(model_cfg, base_cfg)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    report = UpcycleReport()
    for key, tensor in model.state_dict().items():
        source = base_key(key)
        if source not in base_state:
            report.kept.append(key)
            continue
        value = base_state[source]
        if value.shape != tensor.shape:
            raise ValueError(f"{where}: {source} has shape {tuple(value.shape)}, the model's "
                             f"{key} {tuple(tensor.shape)}")
        tensor.copy_(value)
        report.copied[key] = source
    if not report.copied:
        raise ValueError(f"{where}: no tensor of the base matches the model")
    return report
