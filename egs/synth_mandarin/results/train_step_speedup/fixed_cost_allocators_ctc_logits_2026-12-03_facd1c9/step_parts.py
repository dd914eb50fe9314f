import sys, time, statistics, torch
from speechmoe.config import load_config
from speechmoe.model import build_model
from speechmoe.losses import speechmoe_loss
from speechmoe.utils import tune_malloc
tune_malloc(); torch.set_num_threads(2)
ov = {"d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256, "num_classes": 1585, "input_dim": 1008}
B, T = int(sys.argv[2]), int(sys.argv[3])
for name in sys.argv[1].split(","):
    cfg = load_config(f"egs/synth_mandarin/conf/model/{name}.yaml", overrides={"model": ov})
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    feats = torch.randn(B, T, 1008); lengths = torch.full((B,), T)
    S = T // 4; targets = torch.randint(1, 1585, (B, S)); tl = torch.full((B,), S)
    tt = {"fwd": [], "loss": [], "bwd": [], "upd": []}
    def step(rec=False):
        opt.zero_grad(set_to_none=True); t0 = time.perf_counter()
        out = model(feats, lengths, with_embedding_loss=cfg.loss.gamma > 0, log_softmax=False); t1 = time.perf_counter()
        loss = speechmoe_loss(out, targets, tl, cfg.loss, with_floats=False)[0]; t2 = time.perf_counter()
        loss.backward(); t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True); opt.step(); t4 = time.perf_counter()
        if rec:
            for k, a, b in (("fwd", t0, t1), ("loss", t1, t2), ("bwd", t2, t3), ("upd", t3, t4)): tt[k].append(b - a)
    for i in range(25): step(i >= 5)
    print(name, (B, T), {k: round(statistics.median(v) * 1e3, 1) for k, v in tt.items()},
          "total", round(sum(statistics.median(v) for v in tt.values()) * 1e3, 1))
