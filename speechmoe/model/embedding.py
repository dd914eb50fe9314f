"""The shared embedding network (paper section 3.1, Fig. 1c).

A static network (no MoE) with a structure similar to the backbone. Its output
e feeds every router (eq. 8), and its own CTC head is trained with the
embedding loss L_e (the gamma term of eq. 12) so that e carries the
high-level, task-related information the routers need (paper section 5.2).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from speechmoe.config import ModelConfig
from speechmoe.model.backbone import Backbone


class SharedEmbeddingNetwork(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layer = nn.Linear(cfg.input_dim, cfg.d_model)
        self.body = Backbone(
            num_layers=cfg.embedding_layers, d_model=cfg.d_model, ffn_dim=cfg.ffn_dim,
            num_experts=1, attention_every=cfg.embedding_attention_every,
            attention_heads=cfg.attention_heads, attention_ffn_dim=cfg.attention_ffn_dim,
            memory_lookback_order=cfg.memory_lookback_order,
            memory_lookback_stride=cfg.memory_lookback_stride,
            memory_lookahead_order=cfg.memory_lookahead_order,
            memory_lookahead_stride=cfg.memory_lookahead_stride, dropout=cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.ctc_head = nn.Linear(cfg.d_model, cfg.num_classes)  # its own CTC output, for L_e

    def forward(self, feats: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """feats: (B, T, input_dim) -> the shared embedding e: (B, T, d_model)."""
        e, _ = self.body(self.input_layer(feats), mask)
        return self.norm(e)
