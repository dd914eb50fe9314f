"""The SpeechMoE acoustic model: input layer, backbone, output layer, embedding network.

    feats (B, T, 960) --input layer--> o^0 --[MoE + memory] x L, attention every k--> o^L
        --LayerNorm, output layer--> CTC log-probs over units + blank

With model.embedding_layers > 0, the shared embedding network runs on the same
features and its output e is concatenated with o^{l-1} as every router's
input (eq. 8). With model.num_experts == 1 the same code is the static
baseline B1. A config, never a code branch, selects the system.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from speechmoe.config import ModelConfig
from speechmoe.model.backbone import Backbone
from speechmoe.model.embedding import SharedEmbeddingNetwork
from speechmoe.model.moe import RoutingInfo


class ModelOutput(NamedTuple):
    log_probs: torch.Tensor  # (B, T, C) float32 CTC log-probabilities of the backbone;
    # empty (0,) when the model ran with log_softmax=False: `logits` holds its output then
    lengths: torch.Tensor  # (B,) valid frames per utterance
    embedding_log_probs: Optional[torch.Tensor]  # (B, T, C) of the embedding net, for L_e
    routing: list[RoutingInfo]  # one entry per routed MoE layer
    # log_softmax=False only (training): the output layers' logits, un-normalised, which
    # the loss reads through speechmoe.losses.gathered_log_softmax
    logits: Optional[torch.Tensor] = None  # (B, T, C), of the backbone
    embedding_logits: Optional[torch.Tensor] = None  # (B, T, C), of the embedding net


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class SpeechMoE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.input_dim = cfg.input_dim  # (plain attributes: TorchScript cannot see cfg)
        self.embedding = SharedEmbeddingNetwork(cfg) if cfg.has_embedding else None
        self.routes_on_embedding = cfg.has_router and cfg.router_input == "embedding+previous"
        self.input_layer = nn.Linear(cfg.input_dim, cfg.d_model)
        self.backbone = Backbone(
            num_layers=cfg.num_layers, d_model=cfg.d_model, ffn_dim=cfg.ffn_dim,
            num_experts=cfg.num_experts,
            embedding_dim=cfg.d_model if self.routes_on_embedding else 0,
            attention_every=cfg.attention_every, attention_heads=cfg.attention_heads,
            attention_ffn_dim=cfg.attention_ffn_dim,
            memory_lookback_order=cfg.memory_lookback_order,
            memory_lookback_stride=cfg.memory_lookback_stride,
            memory_lookahead_order=cfg.memory_lookahead_order,
            memory_lookahead_stride=cfg.memory_lookahead_stride, dropout=cfg.dropout,
            expert_dropout=cfg.expert_dropout, router_init_gain=cfg.router_init_gain)
        self.detach_embedding = cfg.detach_embedding
        self.norm = nn.LayerNorm(cfg.d_model)
        self.output_layer = nn.Linear(cfg.d_model, cfg.num_classes)  # no residual: softmax
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor,
                with_embedding_loss: Optional[bool] = None,
                log_softmax: bool = True) -> ModelOutput:
        """feats: (B, T, input_dim) normalised, stacked features; lengths: (B,).

        with_embedding_loss: also return the embedding network's CTC
        log-probs (default: in training mode only; inference does not need them).
        log_softmax=False: return the output layers' logits (ModelOutput.logits and
        .embedding_logits) instead of their log-probs, which are left empty: the training
        loss needs only a few columns of each frame's log-softmax, and computes them from
        the logits (speechmoe.losses.gathered_log_softmax).
        """
        B, T, _ = feats.shape
        if feats.shape[-1] != self.input_dim:
            raise ValueError("features have " + str(feats.shape[-1]) + " dims, the model "
                             "expects input_dim=" + str(self.input_dim))
        mask = lengths_to_mask(lengths, T)
        want_emb_loss = self.training if with_embedding_loss is None else with_embedding_loss
        e: Optional[torch.Tensor] = None
        emb_log_probs: Optional[torch.Tensor] = None
        emb_logits: Optional[torch.Tensor] = None
        embedding = self.embedding
        if embedding is not None and (self.routes_on_embedding or want_emb_loss):
            e = embedding(feats, mask)
            if want_emb_loss:
                head = embedding.ctc_head(e)
                if log_softmax:
                    emb_log_probs = torch.log_softmax(head.float(), dim=-1)
                else:
                    emb_logits = head
        x = self.dropout(self.input_layer(feats))
        route_e = e if self.routes_on_embedding else None
        if route_e is not None and self.detach_embedding:
            route_e = route_e.detach()  # the routers read e; only L_e trains the network (3M)
        x, routing = self.backbone(x, mask, route_e)
        logits = self.output_layer(self.norm(x))
        if log_softmax:
            return ModelOutput(torch.log_softmax(logits.float(), dim=-1), lengths,
                               emb_log_probs, routing, None, None)
        return ModelOutput(logits.new_empty(0), lengths, None, routing, logits, emb_logits)


def build_model(cfg: ModelConfig) -> SpeechMoE:
    return SpeechMoE(cfg)
