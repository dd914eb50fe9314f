"""Validation on the dev set: CTC loss, greedy token error rate, routing statistics (with
each layer's speaker NMI: how much the expert a frame goes to says about who speaks), and
how much the routing moved since the previous validation (routing churn)."""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from speechmoe.config import SystemConfig
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.losses import speechmoe_loss
from speechmoe.train.routing_stats import RoutingTracker


@torch.no_grad()
def validate(model, loader, system: SystemConfig, device=torch.device("cpu")) -> dict:
    """Dev-set CTC loss (per output frame, whatever loss.normalization trains with, so that
    systems compare) and greedy token error rate."""
    import kaldialign

    model.eval()
    tot_loss = tot_frames = errs = ref_len = 0.0
    tracker = RoutingTracker()
    experts = []  # per batch: (MoE layers, real frames) expert indices
    speakers: list = []  # per batch: (real frames,) speaker of each (None: unknown)
    for batch in loader:
        if not batch["cut_ids"]:
            continue
        out = model(batch["features"].to(device), batch["lengths"].to(device),
                    with_embedding_loss=False)
        _, parts = speechmoe_loss(out, batch["targets"].to(device),
                                  batch["target_lengths"].to(device),
                                  dataclasses.replace(system.loss, gamma=0.0,
                                                      normalization="frame"))
        frames = int(batch["lengths"].sum())
        tot_loss += parts["ctc"] * frames
        tot_frames += frames
        tracker.update(out.routing)
        if out.routing:
            experts.append(torch.stack([r.expert_index[r.valid > 0] for r in out.routing]).cpu())
            speakers += [s for s, n in zip(batch.get("speakers") or [None] * len(out.lengths),
                                           out.lengths.tolist()) for _ in range(n)]
        hyps = ctc_greedy(out.log_probs, out.lengths)
        for hyp, ref, n in zip(hyps, batch["targets"], batch["target_lengths"]):
            ref = ref[:n].tolist()
            errs += kaldialign.edit_distance(ref, hyp)["total"]
            ref_len += len(ref)
    model.train()
    if not tot_frames or not ref_len:
        raise ValueError("the dev set gave no frames or no reference tokens to validate on "
                         "(every dev cut failed to load, or the dev cuts are empty)")
    experts = torch.cat(experts, 1) if experts else None
    tracker.speaker_nmi = speaker_nmi(experts, speakers)
    return {"ctc": tot_loss / tot_frames, "ter": 100 * errs / ref_len, "routing": tracker,
            "experts": experts}


def speaker_nmi(experts: Optional[torch.Tensor], speakers: list) -> Optional[list[float]]:
    """Per MoE layer, the NMI of a frame's expert with its speaker (speechmoe.analysis.
    routing.nmi); None without routing, or when a frame's speaker is unknown."""
    import numpy as np

    from speechmoe.analysis.routing import nmi

    if experts is None or not speakers or None in speakers:
        return None
    names = {s: i for i, s in enumerate(dict.fromkeys(speakers))}
    spk = np.array([names[s] for s in speakers])
    out = []
    for layer in experts.numpy():
        joint = np.zeros((int(layer.max()) + 1, len(names)), np.int64)
        np.add.at(joint, (layer, spk), 1)
        try:
            out.append(round(nmi(joint), 4))
        except ValueError:  # one speaker and one expert: nothing to say
            return None
    return out


class RoutingChurn:
    """The share of dev frames (every MoE layer) whose top-1 expert differs from the
    previous validation's. Frames that keep changing experts train each expert on what
    another one will get next: in the stability study the seeds that stalled moved 41-54%
    of their frames between epochs 1 and 2, the good ones 24% (egs/synth_mandarin/results/
    stability/churn.txt). None at the first validation, or for a model without routing."""

    def __init__(self):
        self.previous: Optional[torch.Tensor] = None

    def update(self, experts: Optional[torch.Tensor]) -> Optional[float]:
        if experts is None:
            return None
        prev, self.previous = self.previous, experts
        if prev is None or prev.shape != experts.shape:
            return None
        return round(float((prev != experts).float().mean()), 4)
