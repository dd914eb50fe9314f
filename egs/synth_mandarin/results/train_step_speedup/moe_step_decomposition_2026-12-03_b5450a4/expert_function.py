"""Not adopted (2026-12-03, revision b5450a4): the experts of one MoE layer as one autograd
node with a hand-written backward (stacked weights, out= buffers), against the layer's own
dispatch (A) and a padded torch.bmm (C); fwd + bwd of one layer at the tables' scale (1995
frames, d 128, 8 experts of 256), ms, median of 60. Run from the repository root:
.venv/bin/python egs/synth_mandarin/results/train_step_speedup/moe_step_decomposition_2026-12-03_b5450a4/expert_function.py
Measured: A 8.84 / 7.14, B 9.38 / 9.15, C 7.59 / 7.18 (two rounds); gradients equal."""
import time, statistics, torch
from speechmoe.model.moe import MoELayer, expert_counts
from speechmoe.utils import tune_malloc
tune_malloc(); torch.set_num_threads(2)
torch.manual_seed(0)
N, D, H, E = 1995, 128, 256, 8
def bench(f, n=60):
    for _ in range(10): f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3
moe = MoELayer(D, H, E, embedding_dim=D)
W1 = torch.stack([ex.hidden.weight for ex in moe.experts]).detach().requires_grad_()  # E,H,D
b1 = torch.stack([ex.hidden.bias for ex in moe.experts]).detach().requires_grad_()  # E,H
W2 = torch.stack([ex.projection.weight for ex in moe.experts]).detach().requires_grad_()  # E,D,H
flat = torch.randn(N, D, requires_grad=True)
idx = torch.randint(0, E, (N,)); gate = torch.rand(N, requires_grad=True)
gf = torch.randn(N, D)

class Experts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, sizes, W1, b1, W2):
        # xs: rows sorted by expert (no padding), sizes: list
        hs = torch.empty(xs.shape[0], W1.shape[1], dtype=xs.dtype)
        y = torch.empty(xs.shape[0], W2.shape[1], dtype=xs.dtype)
        i = 0
        for e, n in enumerate(sizes):
            if n:
                h = hs[i:i+n]
                torch.addmm(b1[e], xs[i:i+n], W1[e].t(), out=h)
                h.relu_()
                torch.mm(h, W2[e].t(), out=y[i:i+n])
            i += n
        ctx.sizes = sizes
        ctx.save_for_backward(xs, hs, W1, W2)
        return y
    @staticmethod
    def backward(ctx, gy):
        xs, hs, W1, W2 = ctx.saved_tensors
        gy = gy.contiguous()
        gW1 = torch.zeros_like(W1); gb1 = torch.zeros(W1.shape[:2], dtype=W1.dtype); gW2 = torch.zeros_like(W2)
        gx = torch.empty_like(xs)
        gh = torch.empty_like(hs)
        i = 0
        for e, n in enumerate(ctx.sizes):
            if n:
                s = slice(i, i+n)
                torch.mm(gy[s].t(), hs[s], out=gW2[e])
                torch.mm(gy[s], W2[e], out=gh[s])
                gh[s].masked_fill_(hs[s] <= 0, 0)
                torch.mm(gh[s].t(), xs[s], out=gW1[e])
                torch.sum(gh[s], 0, out=gb1[e])
                torch.mm(gh[s], W1[e], out=gx[s])
            i += n
        return gx, None, gW1, gb1, gW2

def run_B():
    order = torch.argsort(idx, stable=True)
    counts = expert_counts(idx, E)
    sizes = counts.tolist()
    xs = flat.index_select(0, order)
    y = Experts.apply(xs, sizes, W1, b1, W2) * gate.index_select(0, order).unsqueeze(-1)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(N))
    out = y.index_select(0, inverse)
    out.mul(gf).sum().backward()

def run_A():
    moe.dispatch(flat, idx, gate).mul(gf).sum().backward()

def run_C():  # padded bmm
    order = torch.argsort(idx, stable=True)
    counts = expert_counts(idx, E)
    cap = int(counts.max())
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(N) - start[idx[order]]
    slot = idx[order] * cap + pos
    xp = flat.new_zeros(E * cap, D).index_copy(0, slot, flat.index_select(0, order))
    h = torch.baddbmm(b1.unsqueeze(1), xp.view(E, cap, D), W1.transpose(1, 2)).relu()
    y = torch.bmm(h, W2.transpose(1, 2)).view(E * cap, D).index_select(0, slot)
    y = y * gate.index_select(0, order).unsqueeze(-1)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(N))
    y.index_select(0, inverse).mul(gf).sum().backward()

for k in range(2):
    print("A", round(bench(run_A), 2), "B", round(bench(run_B), 2), "C", round(bench(run_C), 2))
# check B grads vs A
for p in (flat, gate, W1, b1, W2): p.grad = None
for ex in moe.experts:
    for p in ex.parameters(): p.grad = None
run_A(); ga = (flat.grad.clone(), gate.grad.clone(), torch.stack([ex.hidden.weight.grad for ex in moe.experts]))
flat.grad = None; gate.grad = None
run_B(); print("diff", (flat.grad - ga[0]).abs().max().item(), (gate.grad - ga[1]).abs().max().item(), (W1.grad - ga[2]).abs().max().item())
