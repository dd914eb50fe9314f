"""Quick: eager vs torch.compile on the tables' MoE-8e and B1 step (fixed batch)."""
import sys, time, statistics, torch
from speechmoe.config import load_config
from speechmoe.model import build_model
from speechmoe.losses import speechmoe_loss
from speechmoe.utils import tune_malloc
tune_malloc(); torch.set_num_threads(2)
cfgpath, mode = sys.argv[1], sys.argv[2]
ov = {"d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256, "num_classes": 1585, "input_dim": 1008}
cfg = load_config(cfgpath, overrides={"model": ov})
torch.manual_seed(0)
model = build_model(cfg.model).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
def lossfn(feats, lengths, targets, tl):
    out = model(feats, lengths, with_embedding_loss=cfg.loss.gamma > 0)
    return speechmoe_loss(out, targets, tl, cfg.loss, with_floats=False)[0]
if mode == "compile": model = torch.compile(model, dynamic=True)
f = lossfn
g = torch.Generator().manual_seed(0)
def batch(B, T):
    feats = torch.randn(B, T, 1008, generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g); lengths[0] = T
    S = max(1, T // 4)
    targets = torch.randint(1, 1585, (B, S), generator=g)
    tl = torch.clamp(lengths // 4, 1, S)
    return feats, lengths, targets, tl
shapes = [(21, 95), (30, 66), (12, 170), (40, 50), (21, 95), (16, 120)] * 4
t_first = time.perf_counter(); times = []
for i, (B, T) in enumerate(shapes):
    b = batch(B, T)
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = f(*b); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True); opt.step()
    dt = time.perf_counter() - t0
    times.append(dt)
    if i < 8: print(i, (B, T), f"{dt:.3f}s loss {float(loss):.3f}", flush=True)
print(mode, cfgpath, "total", f"{time.perf_counter()-t_first:.1f}", "median last 12", f"{statistics.median(times[-12:]):.3f}")
