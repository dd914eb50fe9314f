#!/usr/bin/env python3
"""Routing churn of the stability runs: for each pair of consecutive epoch checkpoints, the
share of dev frames (300 utterances, every MoE layer) whose top-1 expert changed, the mean
top-1 gate and the mean router log Z; with each epoch's dev greedy TER. Tests whether the
stalled seeds' routing froze early (large router logits, a saturated softmax) while the
good seeds' kept moving. Run from egs/synth_mandarin (needs exp/stability and data/):

    ../../.venv/bin/python results/stability/churn.py moe_8e moe_8e_z > results/stability/churn.txt
"""
import json
import sys
from pathlib import Path

import torch
from lhotse import CutSet

from speechmoe.data.dataset import AsrDataset
from speechmoe.data.sampling import make_sampler
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.inference import load_model_for_inference
from speechmoe.train.validate import RoutingChurn

torch.set_num_threads(2)
cuts = CutSet.from_file("data/fbank/cuts_dev.jsonl.gz")
feats = FeatureConfig.load("data/fbank/features.json")
dataset = AsrDataset(GlobalCMVN.load("data/fbank/cmvn.pt"), feature_config=feats)
batches = [dataset[b] for b in make_sampler(cuts, 60.0, num_buckets=5, shuffle=False)]


def routing(ckpt):
    model, _ = load_model_for_inference(ckpt)
    idx, gate, logz = [], [], []
    with torch.no_grad():
        for b in batches:
            out = model(b["features"], b["lengths"], with_embedding_loss=False)
            per_layer = []
            for r in out.routing:
                keep = r.valid > 0
                per_layer.append(r.expert_index[keep])
                gate.append(r.probs.max(-1).values[keep])
                logz.append(r.log_z[keep])
            idx.append(torch.stack(per_layer))
    return torch.cat(idx, 1), float(torch.cat(gate).mean()), float(torch.cat(logz).mean())


print("system seed epoch dev_TER churn_vs_prev mean_gate mean_logZ")
for system in sys.argv[1:]:
    for seed in (1, 2, 3):
        run = Path(f"exp/stability/{system}/seed{seed}")
        ters = {json.loads(l)["epoch"]: json.loads(l)["dev_greedy_ter"]
                for l in (run / "log" / "epochs.jsonl").read_text().splitlines()}
        churn = RoutingChurn()  # what validation logs: the share of frames whose expert changed
        for epoch in (1, 2, 3, 4):
            idx, gate, logz = routing(run / f"epoch-{epoch}.pt")
            moved = churn.update(idx)
            print(f"{system} {seed} {epoch} {ters[epoch]:.2f} "
                  f"{'-' if moved is None else f'{moved:.3f}'} {gate:.3f} {logz:.2f}", flush=True)
