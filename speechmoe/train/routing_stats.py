"""Router statistics per MoE layer, accumulated over a logging interval.

For each routed layer: the fraction of frames dispatched to each expert, the
mean router entropy (low = sparse, confident routing; log n = uniform), and
the number of experts that received no frame. Padding frames are already
excluded by the model's RoutingInfo.
"""

from __future__ import annotations

import math

import torch


class RoutingTracker:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.counts: list[torch.Tensor] = []
        self.entropy: list[float] = []
        self.max_prob: list[float] = []
        self.frames = 0

    @torch.no_grad()
    def update(self, routing) -> None:
        if not routing:
            return
        if not self.counts:
            self.counts = [torch.zeros_like(r.counts) for r in routing]
            self.entropy = [0.0] * len(routing)
            self.max_prob = [0.0] * len(routing)
        for i, r in enumerate(routing):
            p = r.probs.float()
            self.counts[i] += r.counts
            self.entropy[i] += float(-(p * p.clamp_min(1e-12).log()).sum())
            self.max_prob[i] += float(p.max(-1).values.sum())
        self.frames += int(routing[0].counts.sum())

    def all_reduce(self, reduce) -> None:
        """Sum the statistics over all ranks (reduce: a 1-D tensor sum over ranks)."""
        if not self.counts:
            return
        n = len(self.counts)
        flat = torch.cat([torch.stack(self.counts).double().reshape(-1),
                          torch.tensor(self.entropy + self.max_prob + [self.frames],
                                       dtype=torch.float64)])
        total = reduce(flat)
        k = self.counts[0].numel()
        self.counts = [c.round().long() for c in total[: n * k].view(n, k)]
        rest = total[n * k:].tolist()
        self.entropy, self.max_prob, self.frames = rest[:n], rest[n:2 * n], int(rest[-1])

    def summary(self) -> list[dict]:
        out = []
        for i, counts in enumerate(self.counts):
            total = max(int(counts.sum()), 1)
            out.append({
                "layer": i,
                "fraction": [round(c / total, 4) for c in counts.tolist()],
                "entropy": self.entropy[i] / total,
                "max_entropy": math.log(len(counts)),
                "mean_gate": self.max_prob[i] / total,
                "unused_experts": int((counts == 0).sum()),
            })
        return out

    def log(self, logger, writer=None, step: int = 0, prefix: str = "train") -> None:
        summary = self.summary()
        if not summary:
            return
        for s in summary:
            logger.info("%s routing layer %02d: fraction %s, entropy %.3f (max %.3f), "
                        "mean gate %.3f, unused experts %d", prefix, s["layer"],
                        " ".join(f"{f:.2f}" for f in s["fraction"]), s["entropy"],
                        s["max_entropy"], s["mean_gate"], s["unused_experts"])
            if writer is not None:
                tag = f"{prefix}_routing/layer{s['layer']:02d}"
                writer.add_scalar(f"{tag}/entropy", s["entropy"], step)
                writer.add_scalar(f"{tag}/mean_gate", s["mean_gate"], step)
                writer.add_scalar(f"{tag}/unused_experts", s["unused_experts"], step)
                for e, f in enumerate(s["fraction"]):
                    writer.add_scalar(f"{tag}/expert{e}_fraction", f, step)
        if writer is not None:
            writer.add_scalar(f"{prefix}_routing/unused_experts_total",
                              sum(s["unused_experts"] for s in summary), step)
