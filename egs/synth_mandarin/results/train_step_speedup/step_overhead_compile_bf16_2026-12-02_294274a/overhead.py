import time, statistics, torch
from speechmoe.config import load_config
from speechmoe.model import build_model
from speechmoe.losses import speechmoe_loss
from speechmoe.utils import tune_malloc
tune_malloc(); torch.set_num_threads(2)
ov = {"d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256, "num_classes": 1585, "input_dim": 1008}
for name in ("b1", "moe_8e"):
    cfg = load_config(f"/work/main/egs/synth_mandarin/conf/model/{name}.yaml", overrides={"model": ov})
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    for B, T in ((1, 12), (21, 95)):
        feats = torch.randn(B, T, 1008); lengths = torch.full((B,), T)
        S = T // 4; targets = torch.randint(1, 1585, (B, S)); tl = torch.full((B,), S)
        def step():
            opt.zero_grad(set_to_none=True)
            out = model(feats, lengths, with_embedding_loss=cfg.loss.gamma > 0)
            loss = speechmoe_loss(out, targets, tl, cfg.loss, with_floats=False)[0]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True); opt.step()
        ts = []
        for i in range(12):
            t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        nops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
        print(name, (B, T), f"median {statistics.median(ts[2:])*1e3:.1f} ms, aten calls {nops}")
    if name == "moe_8e":
        ev = sorted((e for e in prof.key_averages() if e.key.startswith("aten::")), key=lambda e: -e.count)
        print([(e.key[6:], e.count) for e in ev[:40]])
