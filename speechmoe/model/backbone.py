"""A stack of (MoE layer, memory layer) pairs with a self-attention layer after every k pairs.

Paper section 4.3: the SpeechMoE backbone is 30 MoE layers, each followed by a
sequential memory layer, with a self-attention layer inserted after every 10
of those pairs. The same stack with one expert per layer is the static
baseline B1 (60 layers) and the body of the shared embedding network.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from speechmoe.model.attention import SelfAttentionLayer
from speechmoe.model.memory import MemoryBlock
from speechmoe.model.moe import MoELayer, RoutingInfo


class Backbone(nn.Module):
    def __init__(self, num_layers: int, d_model: int, ffn_dim: int, num_experts: int = 1,
                 embedding_dim: int = 0, attention_every: int = 0, attention_heads: int = 8,
                 attention_ffn_dim: int = 1024, memory_lookback_order: int = 5,
                 memory_lookback_stride: int = 2, memory_lookahead_order: int = 1,
                 memory_lookahead_stride: int = 1, dropout: float = 0.0,
                 expert_dropout: float = 0.0, router_init_gain: float = 0.0):
        super().__init__()
        self.moe = nn.ModuleList()
        self.memory = nn.ModuleList()
        self.attention = nn.ModuleDict()  # keyed by the index of the pair it follows
        for layer in range(num_layers):
            self.moe.append(MoELayer(d_model, ffn_dim, num_experts, embedding_dim, dropout,
                                     expert_dropout, router_init_gain))
            self.memory.append(MemoryBlock(d_model, memory_lookback_order,
                                           memory_lookback_stride, memory_lookahead_order,
                                           memory_lookahead_stride))
            if attention_every and (layer + 1) % attention_every == 0:
                self.attention[str(layer)] = SelfAttentionLayer(
                    d_model, attention_heads, attention_ffn_dim, dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                embedding: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, list[RoutingInfo]]:
        routing: list[RoutingInfo] = []
        for layer, (moe, memory) in enumerate(zip(self.moe, self.memory)):
            x, info = moe(x, mask, embedding)
            if info is not None:
                routing.append(info)
            x = memory(x, mask)
            # (a loop over the few attention layers rather than self.attention[str(layer)]:
            # TorchScript indexes a ModuleDict by literals only)
            for key, attention in self.attention.items():
                if key == str(layer):
                    x = attention(x, mask)
        return x, routing
