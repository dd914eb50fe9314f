"""The MoE layer: experts, a top-1 router and the dispatch that joins them.

Paper section 2.2 / 3.1:
    r^l   = W_r^l . o^{l-1}                  (eq. 4, Switch / baseline B2)
    r^l   = W_r^l . concat(e, o^{l-1})       (eq. 8, SpeechMoE)
    p_i^l = softmax(r^l)_i                   (eq. 5)
    y^l   = p_i^l E_i^l(o^{l-1}),  i = argmax_j p_j^l   (eq. 6)

The layer is dropless: every (non-padding) frame is processed by the expert it
is routed to; there is no capacity factor and no token is ever dropped.
"""

from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def _is_exporting() -> bool:
    """True while torch.export / torch.compile traces the model (not in TorchScript)."""
    if torch.jit.is_scripting():
        return False
    return torch.compiler.is_compiling()


class Expert(nn.Module):
    """A DFSMN-style feed-forward expert: d -> hidden (ReLU) -> d linear projection.

    dropout > 0: dropout on the hidden activation ("expert dropout", Switch Transformer
    section 2.4: a higher rate inside the experts than elsewhere).
    """

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.hidden = nn.Linear(d_model, hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # DFSMN's projection layer is linear and has no bias.
        self.projection = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(torch.relu(self.hidden(x))))


class Router(nn.Module):
    """Router weights W_r (eq. 4 / eq. 8): a bias-free linear map to one logit per expert.

    init_gain 0: nn.Linear's default initialisation (uniform, bound 1/sqrt(in_dim));
    > 0: Xavier-uniform with that gain (the authors' 3M toolkit: 0.5), bound
    gain * sqrt(6 / (in_dim + num_experts)).
    """

    def __init__(self, in_dim: int, num_experts: int, init_gain: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(in_dim, num_experts, bias=False)
        if init_gain > 0:
            nn.init.xavier_uniform_(self.proj.weight, gain=init_gain)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """r = W_r x (eq. 4), in float32."""
        return self.proj(x).float()

    def logits_concat(self, e: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """r = W_r concat(e, o) (eq. 8) without building the concatenation: W_r splits
        into the columns that multiply e and those that multiply o."""
        w = self.proj.weight
        d_e = e.shape[-1]
        return F.linear(e, w[:, :d_e]).float() + F.linear(o, w[:, d_e:]).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Router probabilities p (eq. 5), in float32."""
        return torch.softmax(self.logits(x), dim=-1)


class RoutingInfo(NamedTuple):
    """Routing of one MoE layer over the N = B * T frames of a batch, padding included.

    probs:        (N, n) router probabilities p_ij of frame i and expert j
    log_z:        (N,)   logsumexp_j r_ij of the router logits, for the z-loss
    expert_index: (N,)   the expert each frame was dispatched to, -1 for padding
    counts:       (n,)   number of (real) frames dispatched to each expert
    valid:        (N,)   float, 1 on real frames and 0 on padding: every statistic is a
                  sum weighted by it, so nothing here selects rows by a data-dependent
                  mask (which would make the host wait for the device on CUDA)
    """

    probs: torch.Tensor
    log_z: torch.Tensor
    expert_index: torch.Tensor
    counts: torch.Tensor
    valid: torch.Tensor

    def num_frames(self) -> torch.Tensor:
        """m, the number of real frames (a 0-d tensor on the device)."""
        return self.valid.sum()


def expert_counts(expert_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Frames per expert, rows with index -1 (padding) left out; no host sync (bincount
    would read the maximum index back from the device)."""
    ones = torch.ones_like(expert_index)
    counts = torch.zeros(num_experts + 1, dtype=expert_index.dtype, device=expert_index.device)
    return counts.scatter_add_(0, expert_index + 1, ones)[1:]


class _PermuteRows(torch.autograd.Function):
    """x[perm] whose backward is the gather by the inverse permutation: index_select's own
    backward scatters into a zero-filled tensor of x's size, a fill and a scatter where a
    permutation needs one gather."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor):
        ctx.save_for_backward(inverse)
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


class MoELayer(nn.Module):
    """A residual MoE feed-forward layer: o^l = o^{l-1} + p_i E_i(LN(o^{l-1})).

    With num_experts == 1 it is a plain static feed-forward layer with no router
    and no gate (baseline B1 and the shared embedding network).

    The input is layer-normalised before the experts and the router (pre-norm
    residual, as in Switch Transformer): without it 30-60 residual layers
    train poorly. The router sees that normalised o^{l-1}, concatenated with
    the shared embedding e for eq. 8.
    """

    def __init__(self, d_model: int, hidden: int, num_experts: int = 1,
                 embedding_dim: int = 0, dropout: float = 0.0, expert_dropout: float = 0.0,
                 router_init_gain: float = 0.0):
        super().__init__()
        self.num_experts = num_experts
        self.embedding_dim = embedding_dim
        self.norm = nn.LayerNorm(d_model)
        self.experts = nn.ModuleList(Expert(d_model, hidden, expert_dropout)
                                     for _ in range(num_experts))
        self.router = Router(embedding_dim + d_model, num_experts, router_init_gain) \
            if num_experts > 1 else None
        self.dropout = nn.Dropout(dropout)

    def dispatch(self, x: torch.Tensor, expert_index: torch.Tensor,
                 gate: torch.Tensor, counts: Optional[torch.Tensor] = None) -> torch.Tensor:
        """y_i = gate_i * E_{expert_index_i}(x_i) for every row i of x (eq. 6).

        x: (N, d); expert_index: (N,) with -1 for rows that no expert processes
        (padding: their output is 0); gate: (N,); counts: expert_counts(expert_index),
        when the caller has them already.

        The rows are sorted by expert once (one gather, a permutation), the sorted
        rows split into one contiguous block per expert (views), the experts' outputs
        concatenated, gated and put back in the original order (the inverse
        permutation); the backward pass is two gathers as well. The block sizes are
        the only value read back from the device: one host sync per layer (on CUDA),
        where a per-expert torch.where costs one per expert. Every expert
        runs, an idle one on an empty block, so the control flow is fixed and an
        idle expert gets an all-zero gradient rather than none, which is what DDP
        needs without find_unused_parameters. Under TorchScript and torch.export
        the equivalent per-expert gather / index_add_ loop is used (its sizes are
        data-dependent per expert, which both handle).
        """
        if torch.jit.is_scripting() or _is_exporting():
            return self._dispatch_loop(x, expert_index, gate)
        n = self.num_experts
        order = torch.argsort(expert_index, stable=True)  # padding (-1) first
        inverse = torch.empty_like(order).scatter_(
            0, order, torch.arange(order.numel(), device=order.device))
        if counts is None:
            counts = expert_counts(expert_index, n)
        sizes: List[int] = torch.cat([(expert_index < 0).sum().reshape(1), counts]).tolist()
        blocks = _PermuteRows.apply(x, order, inverse).split(sizes)  # [0]: padding
        outs = [x.new_zeros(sizes[0], x.shape[1])]  # padding rows: no expert, output 0
        outs += [expert(blocks[e + 1]) for e, expert in enumerate(self.experts)]
        y = torch.cat(outs) * gate.to(x.dtype).index_select(0, order).unsqueeze(-1)
        return _PermuteRows.apply(y, inverse, order)

    def _dispatch_loop(self, x: torch.Tensor, expert_index: torch.Tensor,
                       gate: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        gate = gate.to(x.dtype)
        for e, expert in enumerate(self.experts):
            rows = torch.where(expert_index == e)[0]
            y = expert(x.index_select(0, rows)) * gate.index_select(0, rows).unsqueeze(-1)
            out.index_add_(0, rows, y)
        return out

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                embedding: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[RoutingInfo]]:
        """x: (B, T, d); mask: (B, T) bool, True on real frames; embedding: (B, T, d_e).

        Returns the layer output and, for a routed layer, its RoutingInfo.
        """
        h = self.norm(x)
        if self.router is None:
            return x + self.dropout(self.experts[0](h)), None

        B, T, D = h.shape
        flat = h.reshape(B * T, D)
        if self.embedding_dim:
            if embedding is None:
                raise ValueError("this MoE layer routes on concat(e, o) (eq. 8) "
                                 "but no shared embedding e was given")
            logits = self.router.logits_concat(embedding.reshape(B * T, -1), flat)  # eq. 8
        else:
            logits = self.router.logits(flat)  # eq. 4
        probs = torch.softmax(logits, dim=-1)  # eq. 5, (B*T, n)
        gate, index = probs.max(dim=-1)  # top-1

        if mask is None:
            dispatched = index
            valid = torch.ones(B * T, dtype=probs.dtype, device=x.device)
        else:
            flat_mask = mask.reshape(B * T)
            dispatched = index.masked_fill(~flat_mask, -1)  # padding goes to no expert
            valid = flat_mask.to(probs.dtype)

        counts = expert_counts(dispatched, self.num_experts)
        out = self.dispatch(flat, dispatched, gate, counts)  # eq. 6
        routing = RoutingInfo(probs=probs, log_z=torch.logsumexp(logits, dim=-1),
                              expert_index=dispatched, counts=counts, valid=valid)
        return x + self.dropout(out.reshape(B, T, D)), routing


def freeze_routing(model: nn.Module) -> int:
    """Stop training what decides the routing: every MoE layer's router and the shared
    embedding network that feeds them (its CTC head included), as StableMoE (Dai et al.,
    2022) freezes its router after a first stage. The routing then moves only as the
    backbone's own hidden states move. Returns the number of parameters frozen."""
    frozen = 0
    modules = [m.router for m in model.modules() if isinstance(m, MoELayer) and m.router is not None]
    if getattr(model, "embedding", None) is not None:
        modules.append(model.embedding)
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                p.grad = None
                frozen += p.numel()
    return frozen
