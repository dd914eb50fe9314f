import sys, time, statistics, torch
from speechmoe.config import load_config
from speechmoe.model import build_model
from speechmoe.losses import speechmoe_loss
from speechmoe.utils import tune_malloc
tune_malloc(); torch.set_num_threads(2)
ov = {"d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256, "num_classes": 1585, "input_dim": 1008}
for name in sys.argv[1:]:
    cfg = load_config(f"egs/synth_mandarin/conf/model/{name}.yaml", overrides={"model": ov})
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    params=[p for p in model.parameters()]
    print(name, "param tensors", len(params))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    B, T = 1, 12
    feats = torch.randn(B, T, 1008); lengths = torch.full((B,), T)
    S = T // 4; targets = torch.randint(1, 1585, (B, S)); tl = torch.full((B,), S)
    tt = {"fwd":[], "bwd":[], "clip":[], "opt":[], "zero":[]}
    for i in range(30):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True); t1=time.perf_counter()
        out = model(feats, lengths, with_embedding_loss=cfg.loss.gamma > 0)
        loss = speechmoe_loss(out, targets, tl, cfg.loss, with_floats=False)[0]
        t2=time.perf_counter()
        loss.backward(); t3=time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True); t4=time.perf_counter()
        opt.step(); t5=time.perf_counter()
        if i>=5:
            for k,(a,b) in zip(["zero","fwd","bwd","clip","opt"],[(t0,t1),(t1,t2),(t2,t3),(t3,t4),(t4,t5)]): tt[k].append(b-a)
    print({k: round(statistics.median(v)*1e3,2) for k,v in tt.items()})
