"""Figure 2 (dev CTC loss over epochs and training hours) and the routing of one MoE system
over training. matplotlib (Agg canvas; no pyplot state) is imported inside the functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechmoe.tables.paper import DEV_LOSS_SYSTEMS, paper_name
from speechmoe.tables.report import system_costs
from speechmoe.tables.runs import NoRunsError, TablesError
from speechmoe.tables.stats import seed_stats

Runs = Mapping[str, Mapping[int, dict]]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _band(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): ± one std for 3+ seeds, min..max for 2, None for 1."""
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return None
    if n == 2:
        return mean, min(values), max(values)
    std = seed_stats(values)["std"]
    return mean, mean - std, mean + std


# --------------------------------------------------------------------------------------------
# Figure 2.

def _plot_dev_loss_system(ax_ep, ax_t, runs_of_system: Mapping[int, dict], label: str) -> None:
    """One system's curves (mean over seeds) and bands on both axes."""
    per_epoch: dict[float, list[float]] = {}
    for run in runs_of_system.values():
        for ep in run["epochs"]:
            per_epoch.setdefault(ep["epoch"], []).append(ep["dev_ctc"])
    xs = sorted(per_epoch)
    means = [sum(per_epoch[x]) / len(per_epoch[x]) for x in xs]
    epoch_seconds = system_costs(runs_of_system)["train_seconds_per_epoch"] or 0.0
    hours = [x * epoch_seconds / 3600.0 for x in xs]
    (line,) = ax_ep.plot(xs, means, marker="o", ms=3, label=label)
    ax_t.plot(hours, means, marker="o", ms=3, color=line.get_color(), label=label)
    bands = [_band(per_epoch[x]) for x in xs]
    if any(b is not None for b in bands):
        keep = [(x, h, b) for x, h, b in zip(xs, hours, bands) if b is not None]
        lo = [b[1] for _, _, b in keep]
        hi = [b[2] for _, _, b in keep]
        ax_ep.fill_between([x for x, _, _ in keep], lo, hi, color=line.get_color(), alpha=0.2)
        ax_t.fill_between([h for _, h, _ in keep], lo, hi, color=line.get_color(), alpha=0.2)


def plot_dev_loss(runs: Runs, out_png: str | Path,
                  systems: Sequence[str] = DEV_LOSS_SYSTEMS) -> Path:
    """Figure 2: dev CTC loss per epoch (left) and against training hours (right), mean over
    seeds with a band of ± one seed std (min..max for two seeds, none for one). The hours of
    epoch k are k times the system's median seconds per epoch (the tables' column): a
    disturbed epoch or run on a shared machine does not move them.

    Systems without runs are skipped and named on the figure; raises
    :class:`~speechmoe.tables.runs.NoRunsError` if none of ``systems`` has a run with epochs.
    """
    present = [s for s in systems if any(r["epochs"] for r in runs.get(s, {}).values())]
    if not present:
        raise NoRunsError(f"plot_dev_loss: none of {', '.join(systems)} has runs with epochs")
    fig = _figure(12, 4.5)
    ax_ep, ax_t = fig.subplots(1, 2)
    for s in present:
        _plot_dev_loss_system(ax_ep, ax_t, runs[s], f"{paper_name(s, 'table3')} (n={len(runs[s])})")
    ax_ep.set_xlabel("epoch")
    ax_t.set_xlabel("training time (hours: epochs x median seconds per epoch)")
    for ax in (ax_ep, ax_t):
        ax.set_ylabel("dev CTC loss")
        ax.grid(alpha=0.3)
        ax.legend()
    absent = [s for s in systems if s not in present]
    title = "Validation CTC loss (mean over seeds; band: ± 1 std, min..max for 2 seeds)"
    if absent:
        title += "\nno runs: " + ", ".join(paper_name(s) for s in absent)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)


# --------------------------------------------------------------------------------------------
# Routing over training.

def _routing_records(runs: Runs, system: str) -> dict[Any, dict[Any, dict[str, list]]]:
    """{layer: {step: {"f": [fractions per seed], "h": [entropy per seed]}}}."""
    by_seed = runs.get(system, {})
    if not by_seed:
        raise NoRunsError(f"{system}: no runs, so no routing to plot")
    acc: dict[Any, dict[Any, dict[str, list]]] = {}
    for run in by_seed.values():
        for rec in run["routing"]:
            for lay in rec["layers"]:
                d = acc.setdefault(lay["layer"], {}).setdefault(rec["step"], {"f": [], "h": []})
                if d["f"] and len(d["f"][0]) != len(lay["fraction"]):
                    raise TablesError(f"{system} layer {lay['layer']} step {rec['step']}: seeds "
                                      f"disagree on the number of experts")
                d["f"].append([float(v) for v in lay["fraction"]])
                d["h"].append(float(lay["entropy"]))
    if not acc:
        raise TablesError(f"{system}: its runs have no routing records (seeds "
                          f"{', '.join(map(str, by_seed))})")
    return acc


def routing_series(runs: Runs, system: str) -> dict[Any, dict]:
    """Per layer: ``steps``, ``fraction`` (steps x experts, mean over seeds) and ``entropy``
    (mean over seeds) of one system's routing records; raises if there are none."""
    acc = _routing_records(runs, system)
    out = {}
    for layer in sorted(acc):
        steps = sorted(acc[layer])
        n_exp = {len(acc[layer][st]["f"][0]) for st in steps}
        if len(n_exp) != 1:
            raise TablesError(f"{system} layer {layer}: the number of experts changes between steps")
        frac = [[sum(col) / len(col) for col in zip(*acc[layer][st]["f"])] for st in steps]
        ent = [sum(acc[layer][st]["h"]) / len(acc[layer][st]["h"]) for st in steps]
        out[layer] = {"steps": steps, "fraction": frac, "entropy": ent}
    return out


def _plot_routing_layer(ax, layer: Any, d: Mapping[str, Any]) -> tuple[list, Any, Any]:
    """One layer's stacked expert shares and its router entropy on a twin axis: (the areas,
    the entropy line, the twin axis)."""
    n_exp = len(d["fraction"][0])
    cols = list(zip(*d["fraction"]))
    polys = ax.stackplot(d["steps"], *cols, labels=[f"expert {j}" for j in range(n_exp)],
                         alpha=0.8)
    ax.set_ylim(0, max(1.0, max(sum(f) for f in d["fraction"])))
    ax.set_title(f"layer {layer}", fontsize=9)
    ax.tick_params(labelsize=7)
    ax2 = ax.twinx()
    (hl,) = ax2.plot(d["steps"], d["entropy"], color="black", lw=1.2, label="router entropy")
    ax2.set_ylim(0, max(max(d["entropy"]) * 1.1, 1e-6))
    ax2.tick_params(labelsize=7)
    return polys, hl, ax2


def plot_routing(runs: Runs, out_png: str | Path, system: str = "moe_8e") -> Path:
    """Per MoE layer of ``system`` (one subplot each, in a grid): every expert's share of frames
    over training steps as stacked areas (mean over seeds) and the router entropy (black line,
    right axis). Any number of layers and experts; raises if the system has no runs or no
    routing records."""
    series = routing_series(runs, system)
    layers = list(series)
    ncols = min(len(layers), max(1, math.ceil(math.sqrt(len(layers)))))
    nrows = math.ceil(len(layers) / ncols)
    fig = _figure(3.4 * ncols, 2.6 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles = None
    for i, layer in enumerate(layers):
        ax = axes[i // ncols][i % ncols]
        polys, hl, ax2 = _plot_routing_layer(ax, layer, series[layer])
        if i % ncols == 0:
            ax.set_ylabel("share of frames", fontsize=8)
        if i % ncols == ncols - 1 or i == len(layers) - 1:
            ax2.set_ylabel("entropy", fontsize=8)
        if i // ncols == nrows - 1 or i + ncols >= len(layers):
            ax.set_xlabel("step", fontsize=8)
        if handles is None or len(polys) + 1 > len(handles):
            handles = list(polys) + [hl]
    for j in range(len(layers), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=8)
    fig.suptitle(f"{paper_name(system)} ({system}): share of frames per expert (stacked) and router "
                 f"entropy (black, right axis); mean over seeds "
                 f"{', '.join(map(str, runs[system]))}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return _save(fig, out_png)
