"""The SpeechMoE training objective (paper eq. 7, 9-12).

    L = L_c + alpha * L_s + beta * L_balance + gamma * L_e            (eq. 12)
        [+ z_loss * L_z, the router z-loss of ST-MoE: off by default]

- L_c: CTC loss of the backbone (torch's CTC; k2 is not installable here).
- L_s: sparsity L1 of the unit-normalised router distributions (eq. 9).
- L_balance: the mean importance loss (eq. 10-11) or the Switch balance
  loss (eq. 7), chosen by config (loss.balance).
- L_e: CTC loss of the shared embedding network's own head.
- L_z: 1/m sum_i (logsumexp_j r_ij)^2 over the router logits r (ST-MoE, Zoph et al.
  2022, eq. 5): keeps the logits small, which the softmax's float32 and a stable
  routing need; not in the paper.

Conventions (the paper leaves them open; loss.normalization chooses):
- The router losses are computed per MoE layer over the m non-padding frames
  of the batch (frame averages, as eq. 9-11 define them).
- "frame" (default): the CTC losses are summed over utterances and divided by
  the number of output frames of the batch, a per-frame loss on the scale of
  the router losses; the router losses are averaged over the MoE layers, so
  alpha and beta do not depend on the depth.
- "utterance": the convention of the authors' released toolkit
  (tencent-ailab/3m-asr, trainer/loss/loss_compute.py): the CTC losses are
  summed over each utterance and averaged over the batch, and the router
  losses of the MoE layers are summed. With ~150 output frames per utterance
  and 30 MoE layers, the router terms weigh about 150/30 = 5 times less
  against CTC than under "frame".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechmoe.config import LossConfig


def sparsity_l1(probs: torch.Tensor) -> torch.Tensor:
    """L_s = 1/m sum_i || f_i / ||f_i||_2 ||_1  (eq. 9).

    probs: (m, n) router distributions. 1 for one-hot rows, sqrt(n) for uniform rows.
    """
    unit = probs / probs.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)
    return unit.abs().sum(dim=-1).mean()


def mean_importance(probs: torch.Tensor) -> torch.Tensor:
    """L_m = n sum_j Imp_j^2 with Imp_j = 1/m sum_i p_ij  (eq. 10-11).

    Minimum 1 when every expert has importance 1/n; n when one expert takes all.
    """
    n = probs.shape[-1]
    importance = probs.mean(dim=0)
    return n * importance.pow(2).sum()


def switch_balance(probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """L_b = n sum_j s_j P_j  (eq. 7, Switch Transformer).

    s_j: fraction of frames dispatched to expert j (not differentiable);
    P_j: mean router probability of expert j. 1 under a uniform split.
    """
    m, n = probs.shape
    fraction = torch.bincount(expert_index, minlength=n).to(probs.dtype) / m
    return n * (fraction * probs.mean(dim=0)).sum()


def router_z_loss(log_z: torch.Tensor) -> torch.Tensor:
    """L_z = 1/m sum_i (logsumexp_j r_ij)^2 (ST-MoE eq. 5), log_z: (m,) per-frame logsumexp."""
    return log_z.pow(2).mean()


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """CTC summed over the batch, divided by its number of frames.

    log_probs: (B, T, C); lengths: (B,); targets: (B, S) padded or (sum S,)
    concatenated; target_lengths: (B,). An utterance whose frames cannot
    align its labels gives +inf (never silently zeroed): the trainer
    detects a non-finite loss and handles it.
    """
    return ctc_sum(log_probs, lengths, targets, target_lengths, blank) / lengths.sum().clamp_min(1)


def globalize(stats: list[torch.Tensor], reduce) -> list[torch.Tensor]:
    """Batch statistics summed over every rank, differentiable in this rank's share.

    Each returned tensor has the value of the global sum and the gradient of the
    local one: x + (reduce(x) - x).detach(). A loss built from these statistics
    has its global value on every rank, and the sum over ranks of the local
    gradients is the gradient of that global loss. reduce=None: one process.
    """
    if reduce is None:
        return stats
    flat = torch.cat([x.detach().reshape(-1).double() for x in stats])
    total = reduce(flat)
    out, i = [], 0
    for x in stats:
        g = total[i:i + x.numel()].view_as(x).to(x.dtype)
        i += x.numel()
        out.append(x + (g - x.detach()))
    return out


def padded_targets(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """(B, S) padded targets from either CTC layout: (B, S) padded, or (sum S,)
    concatenated (split by target_lengths)."""
    if targets.dim() == 2:
        return targets
    parts = targets.split(target_lengths.tolist())
    if not parts:
        return targets.new_zeros(0, 0)
    return torch.nn.utils.rnn.pad_sequence(list(parts), batch_first=True)


class _CompactCTC(torch.autograd.Function):
    """CTC negative log-likelihoods (B,) of log-probs restricted to each utterance's own
    columns: lp (T, B, K), column 0 the blank and column j the j-th label (labels
    compact_targets).

    Its gradient is the true one, -occupancy: torch's CTC returns the gradient with
    respect to the logits of a log_softmax, exp(lp) - occupancy, which is right only
    when the K columns are the whole softmax; the occupancy is exp(lp) minus that
    (tests/test_losses.py checks both against the full-vocabulary CTC).
    """

    @staticmethod
    def forward(ctx, lp, compact_targets, lengths, target_lengths):
        with torch.enable_grad():
            x = lp.detach().requires_grad_()
            nll = F.ctc_loss(x, compact_targets, lengths, target_lengths, blank=0,
                             reduction="none", zero_infinity=False)
            (grad,) = torch.autograd.grad(nll.sum(), x)
        frames = torch.arange(lp.shape[0], device=lp.device)[:, None] < lengths[None, :]
        occupancy = (x.detach().exp() - grad) * frames.unsqueeze(-1)
        ctx.save_for_backward(occupancy)
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        (occupancy,) = ctx.saved_tensors
        return -occupancy * grad_nll[None, :, None], None, None, None


class _GatheredLogSoftmax(torch.autograd.Function):
    """log_softmax(logits)[..., columns] in float32 (float64 for float64 logits) without
    the full log-softmax.

    logits (B, T, C), any float dtype; columns (B, T, K) class indices. Forward: the
    float32 logsumexp of each frame and the K picked logits. Backward, for an incoming
    gradient g (B, T, K): d/dlogits = scatter(g) - softmax(logits) * sum_k g, written
    straight into the gradient in logits' dtype. The separate log_softmax, gather and
    their backwards wrote and read three float32 (B, T, C) tensors more (the log-probs,
    the gather's zero-filled gradient, the log-softmax's gradient) and cast a fourth.
    On the CPU both passes run over blocks of CPU_BLOCK frames, whose float32 temporaries
    stay in cache. Measured on the recipe's batches (MoE-4e, bf16, 2 threads): the step
    1.07x faster than log_softmax + gather, 1.14x with the blocks.
    """

    CPU_BLOCK = 512  # frames

    @staticmethod
    def forward(ctx, logits, columns):
        dtype = torch.promote_types(logits.dtype, torch.float32)
        flat = logits.reshape(-1, logits.shape[-1])
        block = _GatheredLogSoftmax.block(flat)
        lse = torch.empty(flat.shape[0], 1, dtype=dtype, device=logits.device)
        for i in range(0, flat.shape[0], block):
            torch.logsumexp(flat[i:i + block].to(dtype), dim=-1, keepdim=True,
                            out=lse[i:i + block])
        lse = lse.view(*logits.shape[:-1], 1)
        ctx.save_for_backward(logits, lse, columns)
        return logits.gather(-1, columns).to(dtype) - lse

    @staticmethod
    def backward(ctx, g):
        logits, lse, columns = ctx.saved_tensors
        flat = logits.reshape(-1, logits.shape[-1])
        lse, g = lse.reshape(-1, 1), g.reshape(-1, g.shape[-1])
        columns = columns.reshape(-1, columns.shape[-1])
        scale = -g.sum(dim=-1, keepdim=True)
        grad = torch.empty_like(flat)
        block = _GatheredLogSoftmax.block(flat)
        for i in range(0, flat.shape[0], block):
            rows = slice(i, i + block)
            # softmax (in lse's float32, or float64) * -sum(g), plus g on its columns
            grad[rows] = torch.sub(flat[rows], lse[rows]).exp_().mul_(scale[rows]) \
                .scatter_add_(-1, columns[rows], g[rows])
        return grad.view_as(logits), None

    @staticmethod
    def block(flat: torch.Tensor) -> int:
        return _GatheredLogSoftmax.CPU_BLOCK if flat.device.type == "cpu" \
            else max(1, flat.shape[0])


def gathered_log_softmax(logits: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """torch.log_softmax(logits.float(), -1).gather(-1, columns), computed without the
    (B, T, C) log-probs (forward) and their dense gradient (backward); the gradient is
    returned in logits' dtype."""
    return _GatheredLogSoftmax.apply(logits, columns)


def ctc_sum(log_probs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
            target_lengths: torch.Tensor, blank: int = 0, logits: bool = False
            ) -> torch.Tensor:
    """CTC summed over the batch: torch's CTC, on the columns each utterance's labels use.

    log_probs (B, T, C) are gathered to (T, B, S + 1): the blank and the utterance's
    S labels in order, a repeated label in consecutive positions sharing one column
    (so that CTC still needs a blank between them). CTC reads nothing else of a
    frame's distribution, so the loss is the full-vocabulary one; its forward and
    backward cost O(T S) instead of torch's O(T C) (C ~ 1600 here, S ~ 30-60), and
    the gradient reaches log_probs through the gather: the same as torch's CTC with
    reduction="sum", to rounding.

    logits=True: the first argument holds the output layer's logits, un-normalised;
    the picked columns' log-probabilities come from gathered_log_softmax (the same
    loss and gradient, to rounding, without the dense (B, T, C) log-softmax).
    """
    targets = padded_targets(targets, target_lengths)
    B, S = targets.shape
    positions = torch.arange(S, device=targets.device)
    in_label = positions[None, :] < target_lengths[:, None]
    labels = torch.where(in_label, targets, torch.full_like(targets, blank))
    # compact id of position j: j + 1, or the previous position's when the label repeats
    repeat = torch.zeros_like(in_label)
    repeat[:, 1:] = labels[:, 1:] == labels[:, :-1]
    first = torch.where(repeat, torch.zeros_like(positions)[None, :], positions[None, :] + 1)
    compact = torch.cummax(first, dim=1).values
    columns = torch.cat([torch.full_like(labels[:, :1], blank), labels], dim=1)  # (B, S + 1)
    columns = columns[:, None, :].expand(B, log_probs.shape[1], S + 1)
    if logits:
        lp = gathered_log_softmax(log_probs, columns)
    else:
        lp = log_probs.to(torch.promote_types(log_probs.dtype, torch.float32)).gather(2, columns)
    return _CompactCTC.apply(lp.transpose(0, 1), compact, lengths, target_lengths).sum()


def _ctc_sum(log_probs, logits, lengths, targets, target_lengths, blank,
             compact: bool = True) -> torch.Tensor:
    """CTC summed over the batch from the model's logits when it returned them
    (log_softmax=False), else from its log-probs."""
    if logits is not None:
        if compact:
            return ctc_sum(logits, lengths, targets, target_lengths, blank, logits=True)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
    if compact:
        return ctc_sum(log_probs, lengths, targets, target_lengths, blank)
    return F.ctc_loss(log_probs.float().transpose(0, 1), targets, lengths, target_lengths,
                      blank=blank, reduction="sum", zero_infinity=False)


def _routing_stats(probs, valid, log_z, counts) -> list[torch.Tensor]:
    """Sums over the real frames (valid > 0, no data-dependent selection) of one layer's
    (N, n) routing or of all layers' (L, N, n): the L1 norm of the unit-normalised
    probabilities (eq. 9), the squared log Z (z-loss), the importance (eq. 10) and the
    dispatch counts, shaped (), (), (n,), (n,) per layer."""
    p = probs.float()
    real = valid > 0
    unit = p / p.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)
    l1 = torch.where(real, unit.abs().sum(dim=-1), torch.zeros_like(real, dtype=p.dtype))
    imp = torch.where(real.unsqueeze(-1), p, torch.zeros_like(p)).sum(dim=-2)
    z2 = log_z.float().pow(2)
    z2 = torch.where(real, z2, torch.zeros_like(z2))
    return [l1.sum(dim=-1), z2.sum(dim=-1), imp, counts.to(torch.float32)]


def speechmoe_loss(output, targets: torch.Tensor, target_lengths: torch.Tensor,
                   cfg: LossConfig, blank: int = 0, reduce=None,
                   with_floats: bool = True, compact_ctc: bool = True,
                   batched_routing: bool = True) -> tuple[torch.Tensor, dict]:
    """The total loss of eq. 12 and its parts (as floats for logging, or with
    ``with_floats=False`` as detached 0-d tensors, which reads nothing back from the
    device, with "frames": the number of frames the per-frame losses are averaged over).

    output: a speechmoe.model.ModelOutput; when it carries logits (the model run with
    log_softmax=False, as the trainer does) the CTC losses read them through
    gathered_log_softmax instead of the log-probs. reduce: for data-parallel training, a
    function summing a 1-D tensor over all ranks; every statistic the losses are
    made of (CTC sums, frame counts, per-expert importance and dispatch counts) is
    then taken over the global batch, so that L_m and L_b, which are not sums
    over frames, follow the paper's batch definition exactly. compact_ctc=False: torch's
    CTC over the whole vocabulary (the benchmark's baseline path), instead of ctc_sum.
    batched_routing=False: the routing statistics one layer at a time (revision 6f02136's
    loop, the benchmark's baseline path) instead of all layers in one batch of operations;
    the same values.
    """
    use_routing = bool(output.routing) and (cfg.alpha > 0 or cfg.z_loss > 0 or (
        cfg.beta > 0 and cfg.balance in ("mean_importance", "switch")))
    use_emb = cfg.gamma > 0
    if use_emb and output.embedding_log_probs is None and output.embedding_logits is None:
        raise ValueError("loss.gamma > 0 needs the embedding network's log-probs: "
                         "run the model with with_embedding_loss=True")

    per_utt = cfg.normalization == "utterance"
    # what the CTC sums are divided by: output frames, or utterances ("utterance")
    count = (torch.ones_like(output.lengths).sum() if per_utt else output.lengths.sum()
             ).to(torch.float32)
    stats = [_ctc_sum(output.log_probs, output.logits, output.lengths, targets,
                      target_lengths, blank, compact_ctc), count]
    if use_emb:
        stats.append(_ctc_sum(output.embedding_log_probs, output.embedding_logits,
                              output.lengths, targets, target_lengths, blank, compact_ctc))
    layers = output.routing if use_routing else []
    if layers and batched_routing:  # every layer at once: (L, N, n); a few batched ops
        # instead of ~30 per layer
        stats += _routing_stats(torch.stack([r.probs for r in layers]),
                                torch.stack([r.valid for r in layers]),
                                torch.stack([r.log_z for r in layers]),
                                torch.stack([r.counts for r in layers]))
    elif layers:  # one layer at a time, the same values
        per_layer = [_routing_stats(r.probs, r.valid, r.log_z, r.counts) for r in layers]
        stats += [torch.stack(column) for column in zip(*per_layer)]
    stats = globalize(stats, reduce)

    parts: dict[str, torch.Tensor] = {}
    frames_g = stats[1].clamp_min(1)
    total = parts["ctc"] = stats[0] / frames_g  # L_c, per frame (or per utterance)
    if use_emb:
        parts["embedding_ctc"] = stats[2] / frames_g
    if layers:
        l1_sum, z2_sum, imp_sum, counts = stats[-4:]
        m = counts.sum(dim=-1, keepdim=True).clamp_min(1)  # (L, 1) real frames per layer
        n = imp_sum.shape[-1]
        over_layers = torch.sum if per_utt else torch.mean  # of the per-layer values
        if cfg.alpha > 0:
            parts["sparsity"] = over_layers(l1_sum / m.squeeze(-1))  # eq. 9
            total = total + cfg.alpha * parts["sparsity"]
        if cfg.z_loss > 0:
            parts["z_loss"] = over_layers(z2_sum / m.squeeze(-1))  # ST-MoE eq. 5
            total = total + cfg.z_loss * parts["z_loss"]
        if cfg.balance == "mean_importance" and cfg.beta > 0:
            importance = n * (imp_sum / m).pow(2).sum(dim=-1)  # eq. 10-11
            parts["importance"] = over_layers(importance)
            total = total + cfg.beta * parts["importance"]
        elif cfg.balance == "switch" and cfg.beta > 0:
            balance = n * ((counts / m).detach() * (imp_sum / m)).sum(dim=-1)  # eq. 7
            parts["balance"] = over_layers(balance)
            total = total + cfg.beta * parts["balance"]
    if use_emb:
        total = total + cfg.gamma * parts["embedding_ctc"]
    if not with_floats:  # + the (global) count the CTC losses are averaged over: frames,
        # or utterances under "utterance" (the key keeps its name)
        return total, {**{k: v.detach() for k, v in parts.items()},
                       "frames": stats[1].detach()}
    return total, {k: float(v.detach()) for k, v in parts.items()}



def distillation_sum(student: torch.Tensor, teacher_log_probs: torch.Tensor,
                     lengths: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Frame-level knowledge distillation for CTC: the sum over the valid frames of
    KL(p_teacher || p_student), both distributions softened by `temperature` and the sum
    scaled by temperature^2 (Hinton et al. 2015), so that its gradient keeps its size.

    student: (B, T, C) logits or log-probs (the log-softmax is taken here either way);
    teacher_log_probs: (B, T', C) of a model run on the same utterances at the same
    output frame rate; lengths: (B,) frames both have (the shorter of the two per
    utterance). Frames from min(T, T') on are not compared. A device model learns the
    server model's per-frame posteriors this way, blanks and spike timing included.
    """
    if student.shape[-1] != teacher_log_probs.shape[-1]:
        raise ValueError(f"student has {student.shape[-1]} output classes, the teacher "
                         f"{teacher_log_probs.shape[-1]}: distillation needs the same lang dir")
    t = min(student.shape[1], teacher_log_probs.shape[1])
    s_logp = torch.log_softmax(student[:, :t].float() / temperature, dim=-1)
    t_logp = torch.log_softmax(teacher_log_probs[:, :t].float() / temperature, dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(dim=-1)  # (B, t)
    valid = torch.arange(t, device=kl.device)[None, :] < lengths.to(kl.device)[:, None]
    return (kl * valid).sum() * temperature ** 2
