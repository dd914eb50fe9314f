"""Router statistics per MoE layer, accumulated over a logging interval.

For each routed layer: the fraction of frames dispatched to each expert, the
mean router entropy (low = sparse, confident routing; log n = uniform), the
mean gate (top-1 probability), the mean logsumexp of the router logits (their scale,
which the z-loss keeps down; a growing one precedes a collapse onto few experts) and the
number of experts that received no frame; at validation also the NMI of the expert with the
speaker (`speaker_nmi`, set by speechmoe.train.validate when the cuts name speakers).
Padding frames are left out (weighted by the model's RoutingInfo.valid).

The sums stay on the model's device and are read back once, when they are
logged (`summary`): updating them after a step never makes the host wait for
the device.
"""

from __future__ import annotations

import math

import torch


class RoutingTracker:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.counts: list[torch.Tensor] = []  # per layer (n,) frames per expert
        self.speaker_nmi: list[float] | None = None  # per layer, set by validation
        self.sums: torch.Tensor | None = None  # (layers, 4): entropy, gate, frames, log_z

    @torch.no_grad()
    def update(self, routing) -> None:
        if not routing:
            return
        p = torch.stack([r.probs for r in routing]).float()  # (layers, N, n)
        w = torch.stack([r.valid for r in routing]).float()  # (layers, N)
        counts = torch.stack([r.counts for r in routing])
        if not self.counts:
            self.counts = [torch.zeros_like(c) for c in counts]
            self.sums = torch.zeros(len(routing), 4, dtype=torch.float64, device=p.device)
        for i, c in enumerate(counts):
            self.counts[i] += c
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
        log_z = torch.stack([r.log_z for r in routing]).float()
        self.sums += torch.stack([(entropy * w).sum(-1), (p.max(-1).values * w).sum(-1),
                                  w.sum(-1), (log_z * w).sum(-1)], dim=1).double()

    @property
    def frames(self) -> int:
        """Real frames seen by the first routed layer (reads the device)."""
        return int(self.sums[0, 2]) if self.sums is not None else 0

    def all_reduce(self, reduce) -> None:
        """Sum the statistics over all ranks (reduce: a 1-D tensor sum over ranks)."""
        if not self.counts:
            return
        n, k = len(self.counts), self.counts[0].numel()
        flat = torch.cat([torch.stack(self.counts).double().reshape(-1),
                          self.sums.reshape(-1)])
        total = reduce(flat)
        self.counts = [c.round().long() for c in total[: n * k].view(n, k)]
        self.sums = total[n * k:].view(n, 4)

    def summary(self) -> list[dict]:
        if not self.counts:
            return []
        counts = torch.stack(self.counts).tolist()  # the one read-back
        sums = self.sums.tolist()
        out = []
        for i, (c, (entropy, gate, _, log_z)) in enumerate(zip(counts, sums)):
            total = max(int(sum(c)), 1)
            out.append({
                "layer": i,
                "fraction": [round(x / total, 4) for x in c],
                "entropy": entropy / total,
                "max_entropy": math.log(len(c)),
                "mean_gate": gate / total,
                "mean_log_z": log_z / total,
                "unused_experts": sum(1 for x in c if x == 0),
                **({"speaker_nmi": self.speaker_nmi[i]} if self.speaker_nmi else {}),
            })
        return out

    def log(self, logger, writer=None, step: int = 0, prefix: str = "train") -> list[dict]:
        """Log the summary (and to TensorBoard); return it."""
        summary = self.summary()
        if not summary:
            return summary
        for s in summary:
            nmi = f", speaker NMI {s['speaker_nmi']:.3f}" if "speaker_nmi" in s else ""
            logger.info("%s routing layer %02d: fraction %s, entropy %.3f (max %.3f), "
                        "mean gate %.3f, mean log Z %.2f, unused experts %d%s", prefix,
                        s["layer"], " ".join(f"{f:.2f}" for f in s["fraction"]), s["entropy"],
                        s["max_entropy"], s["mean_gate"], s["mean_log_z"], s["unused_experts"],
                        nmi)
            if writer is not None:
                tag = f"{prefix}_routing/layer{s['layer']:02d}"
                writer.add_scalar(f"{tag}/entropy", s["entropy"], step)
                writer.add_scalar(f"{tag}/mean_gate", s["mean_gate"], step)
                writer.add_scalar(f"{tag}/mean_log_z", s["mean_log_z"], step)
                writer.add_scalar(f"{tag}/unused_experts", s["unused_experts"], step)
                if "speaker_nmi" in s:
                    writer.add_scalar(f"{tag}/speaker_nmi", s["speaker_nmi"], step)
                for e, f in enumerate(s["fraction"]):
                    writer.add_scalar(f"{tag}/expert{e}_fraction", f, step)
        if writer is not None:
            writer.add_scalar(f"{prefix}_routing/unused_experts_total",
                              sum(s["unused_experts"] for s in summary), step)
        return summary
