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
        self.channels_last = True  # the kernel: see _filter_channels_last, set_memory_kernel

    @property
    def context(self) -> tuple[int, int]:
        """(frames of look-back, frames of look-ahead) of this layer."""
        return self.lookback_order * self.lookback_stride, \
            self.lookahead_order * self.lookahead_stride

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, T, d); mask: (B, T) bool, True on real frames."""
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        if self.channels_last:
            return self._filter_channels_last(x)
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

    def _filter_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same filters as 2-D depthwise convolutions over (B, d, 1, T) views of x's
        own (B, T, d) memory, which oneDNN reads as channels-last: no transposed copies,
        and on the CPU its channels-last depthwise kernels ran forward and backward 2-3x
        faster than the 1-D (B, d, T) ones (speechmoe.bench.train_step)."""
        h = x.transpose(1, 2).unsqueeze(2)  # (B, d, 1, T), channels-last in memory
        d = h.shape[1]
        back, ahead = self.context
        m = F.conv2d(F.pad(h, (back, 0)), self.lookback.unsqueeze(2),
                     dilation=(1, self.lookback_stride), groups=d)
        if self.lookahead is not None:
            s2 = self.lookahead_stride
            shifted = F.pad(h, (0, ahead))[..., s2:]
            m = m + F.conv2d(shifted, self.lookahead.unsqueeze(2), dilation=(1, s2), groups=d)
        return x + m.squeeze(2).transpose(1, 2)


def set_memory_kernel(model: nn.Module, channels_last: bool) -> None:
    """Choose the memory blocks' kernel in a whole model: channels-last 2-D convolutions
    (the default) or the 1-D ones of earlier revisions (the benchmark's baseline path).
    Both compute the same filters; they differ by rounding."""
    for module in model.modules():
        if isinstance(module, MemoryBlock):
            module.channels_last = channels_last
