"""Model and loss configuration: typed, validated, loaded from YAML.

A config file selects a system of the paper (B1, B2, MoE-L1, +emb, MoE-2e/4e/8e);
no code path is chosen any other way. Files have two sections::

    model: {...}   # fields of ModelConfig
    loss:  {...}   # fields of LossConfig

Unknown keys, wrong types and sizes that do not fit together are errors that
name the file, the key and the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ROUTER_INPUTS = ("previous", "embedding+previous")
BALANCE_LOSSES = ("none", "switch", "mean_importance")
LOSS_NORMALIZATIONS = ("frame", "utterance")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or inconsistent."""


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


@dataclass
class ModelConfig:
    """Sizes of the acoustic model (paper section 4.3; defaults are MoE-4e)."""

    # The data decide these two: training sets them from the stored features
    # (FeatureConfig.model_dim) and the lang dir's tokens.txt, so the model YAMLs leave
    # them out. The defaults are what speechmoe-info and the benchmarks assume:
    # input 40 fbank + deltas + double deltas = 120 dims, 8 frames stacked;
    # output 1394 toned syllables + 39 English phones + blank.
    input_dim: int = 960
    num_classes: int = 1434
    d_model: int = 512
    # Backbone: num_layers x (MoE layer + memory layer), one self-attention
    # layer after every `attention_every` of those pairs (0: none).
    num_layers: int = 30
    attention_every: int = 10
    # Each expert: d_model -> ffn_dim (ReLU) -> d_model linear projection.
    ffn_dim: int = 1024
    # 1 expert = a static layer with no router (baseline B1).
    num_experts: int = 4
    # eq. 4 ("previous": r = W_r o_{l-1}) or eq. 8 ("embedding+previous":
    # r = W_r concat(e, o_{l-1})).
    router_input: str = "embedding+previous"
    # Sequential memory layer (DFSMN memory block).
    memory_lookback_order: int = 5
    memory_lookback_stride: int = 2
    memory_lookahead_order: int = 1
    memory_lookahead_stride: int = 1
    # Self-attention layer.
    attention_heads: int = 8
    attention_ffn_dim: int = 1024
    # Shared embedding network: a static network like the backbone, with its
    # own CTC head. 0 layers = no embedding network (B1, B2, MoE-L1).
    embedding_layers: int = 30
    embedding_attention_every: int = 0
    dropout: float = 0.0
    # Routed training's stabilisers (issue 19; each default is the paper's setup):
    # dropout on the experts' hidden activations (Switch Transformer's expert dropout)
    expert_dropout: float = 0.0
    # router weights: 0 = nn.Linear's default init; > 0 = Xavier-uniform with this gain
    # (the authors' 3M toolkit uses 0.5)
    router_init_gain: float = 0.0
    # routers read the embedding e detached: no router gradient reaches the embedding
    # network, which L_e alone trains (3M); needs loss.gamma > 0
    detach_embedding: bool = False

    def validate(self, where: str = "model") -> None:
        def need(cond: bool, msg: str) -> None:
            _need(cond, where, msg)

        for name in ("input_dim", "num_classes", "d_model", "num_layers", "ffn_dim",
                     "num_experts", "attention_heads", "attention_ffn_dim"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.num_classes >= 2, "num_classes must count the blank and at least one unit")
        for name in ("attention_every", "embedding_layers", "embedding_attention_every",
                     "memory_lookback_order", "memory_lookahead_order"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("memory_lookback_stride", "memory_lookahead_stride"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.d_model % self.attention_heads == 0,
             f"d_model ({self.d_model}) must be divisible by attention_heads "
             f"({self.attention_heads})")
        need(self.router_input in ROUTER_INPUTS,
             f"router_input must be one of {ROUTER_INPUTS}, got {self.router_input!r}")
        need(not (self.router_input == "embedding+previous" and self.num_experts > 1
                  and self.embedding_layers == 0),
             "router_input 'embedding+previous' (eq. 8) needs the shared embedding network: "
             "set embedding_layers > 0 or router_input: previous")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        need(0.0 <= self.expert_dropout < 1.0,
             f"expert_dropout must be in [0, 1), got {self.expert_dropout}")
        need(self.router_init_gain >= 0,
             f"router_init_gain must be >= 0 (0: the default init), got {self.router_init_gain}")
        need(not (self.detach_embedding and not (
            self.has_router and self.router_input == "embedding+previous")),
             "detach_embedding: no router reads the embedding (needs num_experts > 1 and "
             "router_input: embedding+previous)")

    @property
    def has_router(self) -> bool:
        return self.num_experts > 1

    @property
    def has_embedding(self) -> bool:
        return self.embedding_layers > 0


@dataclass
class LossConfig:
    """L = L_c + alpha L_s + beta L_balance + gamma L_e (eq. 12)."""

    # Balance term: "mean_importance" (eq. 10-11), "switch" (eq. 7), or "none".
    balance: str = "mean_importance"
    alpha: float = 0.1  # sparsity L1 (eq. 9)
    beta: float = 0.1  # balance term
    gamma: float = 0.01  # embedding-network CTC
    # How the terms are scaled (the paper leaves it open; speechmoe/losses.py):
    #   frame      CTC per output frame, router losses averaged over the MoE layers
    #   utterance  the authors' released code (tencent-ailab/3m-asr): CTC summed over each
    #              utterance and averaged over the batch, router losses summed over layers
    normalization: str = "frame"
    # router z-loss (ST-MoE, Zoph et al. 2022, eq. 5): z_loss * mean over real frames of
    # (logsumexp_j r_ij)^2, over the MoE layers as the other router terms; 0 = off
    z_loss: float = 0.0

    def validate(self, model: ModelConfig, where: str = "loss") -> None:
        def need(cond: bool, msg: str) -> None:
            _need(cond, where, msg)

        need(self.normalization in LOSS_NORMALIZATIONS,
             f"normalization must be one of {LOSS_NORMALIZATIONS}, got {self.normalization!r}")
        need(self.balance in BALANCE_LOSSES,
             f"balance must be one of {BALANCE_LOSSES}, got {self.balance!r}")
        for name in ("alpha", "beta", "gamma", "z_loss"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(not (self.gamma > 0 and not model.has_embedding),
             "gamma > 0 weights the embedding network's CTC loss, but the model has no "
             "embedding network: set gamma: 0 or model.embedding_layers > 0")
        need(not (model.has_embedding and self.gamma == 0 and not (
            model.has_router and model.router_input == "embedding+previous")),
             "the embedding network would be used by nothing: no router reads it "
             "(router_input or num_experts) and gamma is 0: set embedding_layers: 0, "
             "or gamma > 0")
        need(not (model.num_experts == 1 and (self.alpha > 0 or
                                               (self.balance != "none" and self.beta > 0))),
             "a static model (num_experts: 1) has no router: set alpha: 0 and balance: none")
        need(not (model.num_experts == 1 and self.z_loss > 0),
             "a static model (num_experts: 1) has no router: set z_loss: 0")
        need(not (model.detach_embedding and self.gamma == 0),
             "model.detach_embedding with gamma 0: nothing would train the embedding network "
             "(set gamma > 0)")


@dataclass
class SystemConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    name: str = ""

    def validate(self, where: str = "config") -> None:
        self.model.validate(f"{where}: model")
        self.loss.validate(self.model, f"{where}: loss")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, data: Any, where: str):
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    kwargs = {}
    defaults = cls()
    for key, value in data.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} must be {expected.__name__}, "
                              f"got {value!r} ({type(value).__name__})")
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: Mapping, where: str = "config") -> SystemConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'model' and 'loss' sections")
    unknown = sorted(set(data) - {"model", "loss", "name"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; "
                          "expected 'model', 'loss', 'name'")
    cfg = SystemConfig(
        model=_build(ModelConfig, data.get("model"), f"{where}: model"),
        loss=_build(LossConfig, data.get("loss"), f"{where}: loss"),
        name=str(data.get("name", "")),
    )
    cfg.validate(where)
    return cfg


def load_config(path: str | Path, overrides: Mapping | None = None) -> SystemConfig:
    """Load and validate a system config from YAML.

    ``overrides`` is a mapping like ``{"model": {"num_layers": 2}}`` merged over
    the file before validation (used by tiny CI runs).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        raise ConfigError(f"{path}: config file is empty")
    if overrides:
        data = _merge(data, overrides)
    if not data.get("name"):
        data = {**data, "name": path.stem}
    return config_from_dict(data, where=str(path))


def _merge(base: Any, over: Mapping) -> dict:
    out = dict(base) if isinstance(base, Mapping) else {}
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
