"""The sequential memory layer: a DFSMN memory block with a residual connection.

For each dimension d (Zhang et al. 2018, DFSMN; paper section 4.3):

    m_t = sum_{i=0}^{N1} a_i * h_{t - s1*i}  +  sum_{j=1}^{N2} c_j * h_{t + s2*j}
    o_t = h_t + m_t

N1 / s1 are the look-back order / stride (paper: 5 / 2) and N2 / s2 the
look-ahead order / stride (paper: 1 / 1). The look-ahead of one layer is
exactly N2 * s2 frames; beyond it a frame's output does not depend on the
future. Padding frames are zeroed before filtering so that the last real
frames of an utterance see the same zeros as at an utterance edge.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class MemoryBlock(nn.Module):
    def __init__(self, d_model: int, lookback_order: int = 5, lookback_stride: int = 2,
                 lookahead_order: int = 1, lookahead_stride: int = 1):
        super().__init__()
        self.lookback_order = lookback_order
        self.lookback_stride = lookback_stride
        self.lookahead_order = lookahead_order
        self.lookahead_stride = lookahead_stride
        # Depthwise FIR filters, one per dimension; the last look-back tap is
        # the current frame (i = 0). Zero initialisation starts the layer as
        # the identity, which keeps deep residual stacks stable at the start.
        self.lookback = nn.Parameter(torch.zeros(d_model, 1, lookback_order + 1))
        # No parameter at all without look-ahead: an unused one would upset DDP.
        self.lookahead = nn.Parameter(torch.zeros(d_model, 1, lookahead_order)) \
            if lookahead_order > 0 else None

    @property
    def context(self) -> tuple[int, int]:
        """(frames of look-back, frames of look-ahead) of this layer."""
        return self.lookback_order * self.lookback_stride, \
            self.lookahead_order * self.lookahead_stride

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, T, d); mask: (B, T) bool, True on real frames."""
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        h = x.transpose(1, 2)  # (B, d, T)
        d = h.shape[1]
        back, ahead = self.context
        # out[t] = sum_k a_k h[t - s1*(N1 - k)], k = 0..N1
        m = F.conv1d(F.pad(h, (back, 0)), self.lookback, dilation=self.lookback_stride,
                     groups=d)
        if self.lookahead is not None:
            # out[t] = sum_{j=1}^{N2} c_j h[t + s2*j]: shift left by s2, pad the end.
            s2 = self.lookahead_stride
            shifted = F.pad(h, (0, ahead))[:, :, s2:]
            m = m + F.conv1d(shifted, self.lookahead, dilation=s2, groups=d)
        return x + m.transpose(1, 2)
