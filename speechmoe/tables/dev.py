"""Dev-only runs: choosing a training setting on the dev set, never on a test set.

``local/tables.py --dev-only`` trains each (system, seed) as the tables do but decodes nothing:
it keeps what training measured on dev (CTC loss and greedy token error rate per epoch),
the routing statistics and a summary of the per-step log (gradient norms, loss spikes) in
``<tables-dir>/dev_runs/<system>/seed<k>.json``. This module turns those files into the
comparison the choice is made on (DEV.md, dev.json):

- per system: the final dev greedy TER and dev CTC of every seed, their mean and std;
- the seed spread (largest minus smallest final dev greedy TER) and its ratio to the
  reference system's (B1's): the stability target of issue 19 is a ratio <= 1.5;
- stalled seeds: a seed whose final dev greedy TER exceeds its system's best seed's by
  more than STALL_FACTOR (written down before the first run, with the target).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from speechmoe.tables.runs import NoRunsError, RunFileError
from speechmoe.tables.stats import seed_stats

STALL_FACTOR = 1.5  # final dev greedy TER > 1.5 x the system's best seed's: a stalled seed
SPREAD_TARGET = 1.5  # a routed system's seed spread at most 1.5 x the reference's


def dev_run_path(tables_dir: str | Path, system: str, seed: int) -> Path:
    return Path(tables_dir) / "dev_runs" / system / f"seed{seed}.json"


def step_log_summary(losses_jsonl: Path, spike_factor: float = 2.0,
                     window: int = 20) -> dict[str, Any]:
    """From a run's log/losses.jsonl (one record per update; a resumed run's repeats of a
    step are replaced): the steps, the largest gradient norm and where, the median one, and
    the loss spikes (a loss above spike_factor x the median of the previous `window`)."""
    by_step: dict[int, dict] = {}
    for line in losses_jsonl.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            by_step[rec["step"]] = rec
    if not by_step:
        raise RunFileError(f"{losses_jsonl}: no step logged")
    steps = sorted(by_step)
    losses = [by_step[s]["loss"] for s in steps]
    norms = [(by_step[s].get("grad_norm"), s) for s in steps]
    norms = [(g, s) for g, s in norms if g is not None]
    spikes = []
    for i in range(window, len(steps)):
        previous = sorted(losses[i - window:i])
        if losses[i] > spike_factor * previous[window // 2]:
            spikes.append(steps[i])
    out: dict[str, Any] = {"steps": len(steps), "last_step": steps[-1],
                           "loss_spikes": spikes, "final_loss": losses[-1]}
    if norms:
        ordered = sorted(g for g, _ in norms)
        top = max(norms)
        out.update(max_grad_norm=top[0], max_grad_norm_step=top[1],
                   median_grad_norm=ordered[len(ordered) // 2])
    return out


def stored_dev_runs(tables_dir: str | Path) -> dict[str, list[int]]:
    """{system: [seeds]} of the dev runs stored in a tables dir."""
    out: dict[str, list[int]] = {}
    for path in sorted(Path(tables_dir).glob("dev_runs/*/seed*.json")):
        seed = path.stem[len("seed"):]
        if seed.isdigit():
            out.setdefault(path.parent.name, []).append(int(seed))
    return {k: sorted(v) for k, v in out.items()}


def load_dev_runs(tables_dir: str | Path, systems: list[str],
                  seeds: list[int], allow_missing: bool = False) -> dict[str, dict[int, dict]]:
    """{system: {seed: dev run}}; allow_missing: seeds not run are left out (a system with
    none is still an error)."""
    runs: dict[str, dict[int, dict]] = {}
    for system in systems:
        for seed in seeds:
            path = dev_run_path(tables_dir, system, seed)
            if not path.is_file():
                if allow_missing:
                    continue
                raise RunFileError(f"{path}: missing (run local/tables.py --dev-only)")
            run = json.loads(path.read_text())
            if not run.get("epochs"):
                raise RunFileError(f"{path}: no epoch recorded")
            runs.setdefault(system, {})[seed] = run
        if system not in runs:
            raise RunFileError(f"{system}: no dev run in {tables_dir} (run local/tables.py "
                               "--dev-only)")
    return runs


def dev_summary(runs: dict[str, dict[int, dict]], reference: str,
                seeds: list[int] | None = None) -> dict[str, dict]:
    """Per system: the final dev rates of every seed, mean/std, spread, its ratio to the
    reference system's, the stalled seeds, and those of `seeds` not run."""
    if reference not in runs:
        raise NoRunsError(f"the reference system {reference!r} has no dev run")
    out: dict[str, dict] = {}
    for system, by_seed in runs.items():
        if not by_seed:
            raise NoRunsError(f"{system}: no seed")
        ter = {k: r["epochs"][-1]["dev_greedy_ter"] for k, r in sorted(by_seed.items())}
        ctc = {k: r["epochs"][-1]["dev_ctc"] for k, r in sorted(by_seed.items())}
        best = min(ter.values())
        out[system] = {
            "seeds": sorted(by_seed), "dev_greedy_ter": ter, "dev_ctc": ctc,
            "ter": seed_stats(list(ter.values())), "ctc": seed_stats(list(ctc.values())),
            "spread": max(ter.values()) - best,
            "stalled_seeds": [k for k, v in ter.items() if v > STALL_FACTOR * best],
            "updates": {k: r["epochs"][-1]["step"] for k, r in sorted(by_seed.items())},
            "not_run": [k for k in (seeds or []) if k not in by_seed],
        }
    ref_spread = out[reference]["spread"]
    for s in out.values():
        s["spread_ratio"] = s["spread"] / ref_spread if ref_spread > 0 else (
            math.inf if s["spread"] > 0 else 1.0)
    return out


def dev_markdown(summary: dict[str, dict], reference: str, dev_set: str,
                 utterances: int | None) -> str:
    """The dev comparison as a Markdown table, with the rule it is read by."""
    n = f"{utterances} utterances" if utterances else "its utterances"
    lines = [
        f"# Dev-only runs: final dev greedy token error rate (TER, %) and CTC loss per frame, "
        f"on {dev_set} ({n})",
        "",
        f"Rule, fixed before the runs: a seed has stalled when its final dev greedy TER is "
        f"more than {STALL_FACTOR}x its system's best seed's; a routed system is stable "
        f"when none of its seeds stalls and its seed spread (largest minus smallest final "
        f"dev greedy TER) is at most {SPREAD_TARGET}x {reference}'s.",
        "",
        "| system | seeds | dev TER per seed | mean | std | spread | x " + reference
        + " | stalled | dev CTC mean | updates |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system, s in summary.items():
        std = "n/a" if s["ter"]["std"] is None else f"{s['ter']['std']:.2f}"
        lines.append(
            f"| {system} | {len(s['seeds'])} | "
            + " / ".join(f"{v:.2f}" for v in s["dev_greedy_ter"].values())
            + f" | {s['ter']['mean']:.2f} | {std} | {s['spread']:.2f} | "
            f"{s['spread_ratio']:.2f} | {' '.join(f'seed{k}' for k in s['stalled_seeds']) or '-'}"
            f" | {s['ctc']['mean']:.4f} | "
            + "/".join(str(v) for v in s["updates"].values()) + " |")
    not_run = [f"{system} seed{k}" for system, s in summary.items() for k in s.get("not_run", [])]
    if not_run:
        lines += ["", "Not run: " + ", ".join(not_run) + " (each row covers the seeds it "
                  "lists)."]
    return "\n".join(lines) + "\n"
