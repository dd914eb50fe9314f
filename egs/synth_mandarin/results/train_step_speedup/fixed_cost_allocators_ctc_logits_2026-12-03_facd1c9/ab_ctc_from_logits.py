"""The training step on the recipe's own batches with the CTC losses' log-softmax three ways,
interleaved on the same 12 batches, twice: the model's log-probs (log_softmax=True), and
gathered_log_softmax from the logits without and with blocks. Run from egs/synth_mandarin
with its data/ built: ../../.venv/bin/python results/train_step_speedup/fixed_cost_allocators_ctc_logits_2026-12-03_facd1c9/ab_ctc_from_logits.py
"""
import statistics
import tempfile
import time

import speechmoe.losses as L
from speechmoe.train.params import TrainParams
from speechmoe.train.trainer import Trainer

tr = Trainer(TrainParams(
    exp_dir=tempfile.mkdtemp(), model_config="conf/model/moe_4e.yaml", lang_dir="data/lang",
    train_cuts=["data/fbank/cuts_train.jsonl.gz", "data/fbank/cuts_train_aug.jsonl.gz"],
    dev_cuts="data/fbank/cuts_dev.jsonl.gz", cmvn="data/fbank/cmvn.pt", max_duration=120,
    amp="auto", save_every_n=0, num_workers=0))
it = iter(tr.loader)
batches = [next(it) for _ in range(12)]
forward = tr.model.forward


def with_log_probs(*a, **k):
    return forward(*a, **{**k, "log_softmax": True})


variants = {"log_probs": (with_log_probs, 512), "logits, one block": (forward, 10**9),
            "logits, blocks of 512": (forward, 512)}
times = {k: [] for k in variants}
for rep in range(2):
    for b in batches:
        for name, (f, block) in variants.items():
            tr.model.forward = f
            L._GatheredLogSoftmax.CPU_BLOCK = block
            t0 = time.perf_counter()
            tr.train_step([b], 1)
            times[name].append(time.perf_counter() - t0)
for k, v in times.items():
    print(f"{k:22s} sum of 22 steps {sum(v[2:]):.2f} s, median {statistics.median(v[2:]):.3f} s")
