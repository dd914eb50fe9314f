"""The DFSMN memory block: exact taps, look-back and look-ahead."""

import pytest
import torch

from speechmoe.model.memory import MemoryBlock


def make_block(d=3, n1=5, s1=2, n2=1, s2=1):
    torch.manual_seed(0)
    block = MemoryBlock(d, n1, s1, n2, s2)
    with torch.no_grad():
        block.lookback.normal_()
        if block.lookahead is not None:
            block.lookahead.normal_()
    return block


@pytest.mark.parametrize("n1,s1,n2,s2", [(5, 2, 1, 1), (3, 1, 2, 2), (2, 3, 0, 1)])
def test_memory_block_equals_the_dfsmn_formula(n1, s1, n2, s2):
    block = make_block(4, n1, s1, n2, s2)
    T = 20
    x = torch.randn(1, T, 4)
    y = block(x)
    a = block.lookback[:, 0, :].detach()  # a[:, k] multiplies h[t - s1 * (n1 - k)]
    c = block.lookahead[:, 0, :].detach() if n2 else None  # c[:, j-1] multiplies h[t + s2 j]
    ref = x.clone()
    for t in range(T):
        for i in range(n1 + 1):
            if t - s1 * i >= 0:
                ref[0, t] += a[:, n1 - i] * x[0, t - s1 * i]
        for j in range(1, n2 + 1):
            if t + s2 * j < T:
                ref[0, t] += c[:, j - 1] * x[0, t + s2 * j]
    assert torch.allclose(y, ref, atol=1e-5)


def test_lookahead_is_exactly_the_configured_frames():
    block = make_block(n1=5, s1=2, n2=1, s2=1)  # the paper's memory block
    assert block.context == (10, 1)
    T, t = 30, 15
    x = torch.randn(1, T, 3)
    base = block(x)[0, t]
    # Any change beyond t + 1 leaves frame t alone.
    x2 = x.clone()
    x2[0, t + 2:] = torch.randn(T - t - 2, 3)
    assert torch.equal(block(x2)[0, t], base)
    # The frame at t + 1 is inside the look-ahead.
    x3 = x.clone()
    x3[0, t + 1] += 1
    assert not torch.allclose(block(x3)[0, t], base)


def test_lookback_uses_only_the_strided_taps():
    block = make_block(n1=5, s1=2, n2=1, s2=1)
    T, t = 30, 20
    x = torch.randn(1, T, 3)
    base = block(x)[0, t]
    for offset in range(1, 14):
        x2 = x.clone()
        x2[0, t - offset] += 1
        changed = not torch.allclose(block(x2)[0, t], base)
        assert changed == (offset % 2 == 0 and offset <= 10), offset


def test_padding_is_zeroed_like_an_utterance_edge():
    block = make_block()
    x = torch.randn(2, 9, 3)
    mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    y = block(x, mask)
    alone = block(x[1:, :6])
    assert torch.allclose(y[1, :6], alone[0], atol=1e-6)
