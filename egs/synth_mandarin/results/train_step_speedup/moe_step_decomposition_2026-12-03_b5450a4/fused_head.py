"""Not adopted (2026-12-03, revision b5450a4): the output layer and the CTC's picked
log-softmax fused in blocks of frames, the logits recomputed in backward (never the whole
(N, 1585)), against nn.Linear + speechmoe.losses.gathered_log_softmax; fwd + bwd, ms,
median of 30.
    .venv/bin/python egs/synth_mandarin/results/train_step_speedup/moe_step_decomposition_2026-12-03_b5450a4/fused_head.py N D [BLOCK] [bf16]
Measured: 1995 128 512 fp32: 18.62 / 18.48 against fused 20.55 / 20.27; block 256: 20.91 / 22.54
against 27.93 / 26.31; 4000 256 512 bf16: 25.21 / 25.06 against 29.08 / 31.03."""
import sys, time, statistics, torch
from speechmoe.losses import gathered_log_softmax
from speechmoe.utils import tune_malloc
tune_malloc(); torch.set_num_threads(2)
torch.manual_seed(0)
N, D, C, K = int(sys.argv[1]), int(sys.argv[2]), 1585, 32
BLK = int(sys.argv[3]) if len(sys.argv) > 3 else 512
dt = torch.bfloat16 if len(sys.argv) > 4 else torch.float32

class FusedHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, b, cols):
        out = torch.empty(N, K, dtype=torch.float32)
        lse = torch.empty(N, 1, dtype=torch.float32)
        for i in range(0, N, BLK):
            s = slice(i, i + BLK)
            lg = torch.addmm(b, h[s], W.t()).float()
            torch.logsumexp(lg, -1, keepdim=True, out=lse[s])
            torch.sub(lg.gather(-1, cols[s]), lse[s], out=out[s])
        ctx.save_for_backward(h, W, b, cols, lse)
        return out
    @staticmethod
    def backward(ctx, g):
        h, W, b, cols, lse = ctx.saved_tensors
        gh = torch.empty_like(h); gW = torch.zeros_like(W); gb = torch.zeros_like(b)
        scale = -g.sum(-1, keepdim=True)
        for i in range(0, N, BLK):
            s = slice(i, i + BLK)
            lg = torch.addmm(b, h[s], W.t()).float()
            gl = lg.sub_(lse[s]).exp_().mul_(scale[s]).scatter_add_(-1, cols[s], g[s]).to(h.dtype)
            torch.mm(gl, W, out=gh[s])
            gW.addmm_(gl.t(), h[s])
            gb.add_(gl.sum(0))
        return gh, gW, gb, None

h = torch.randn(N, D, dtype=dt, requires_grad=True)
lin = torch.nn.Linear(D, C).to(dt)
cols = torch.randint(0, C, (N, K))
g = torch.randn(N, K)
def cur():
    lin.zero_grad(); h.grad = None
    gathered_log_softmax(lin(h), cols).mul(g).sum().backward()
def fused():
    lin.zero_grad(); h.grad = None
    FusedHead.apply(h, lin.weight, lin.bias, cols).mul(g).sum().backward()
def bench(f, n=30):
    for _ in range(5): f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3
cur(); ref = (h.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone())
fused(); print("max diff", [(a - b).abs().max().item() for a, b in zip(ref, (h.grad, lin.weight.grad, lin.bias.grad))])
for _ in range(2):
    print(N, D, BLK, dt, "current", round(bench(cur), 2), "fused", round(bench(fused), 2))
