"""The update budget at which a model has converged on dev, read from its dev curve.

Issue 36's comparison gives every system the same number of updates, long enough that the
reference (B1) has converged: its dev greedy token error rate improves by less than 3%
relative over the last fifth of its updates. The budget is found once, from B1 seed 1's
curve (a run to the cap with dev measured every ``--valid-every-n`` updates), by the rule
written before that run (``egs/synth_mandarin/results/moe_many_voices/RULE_COMPARISON.md``):

- the candidates are ``first, first + step, ..., cap`` (2,000 to 8,000 in steps of 1,000);
- the error rate "at update u" is the mean of the last ``window`` measurements at or before
  u (one validation is noisy by several percent relative; a mean of three is steadier),
  counting only measurements on the ``grid`` (every 200 updates: an epoch's end that falls
  between two of them is left out, so that every mean spans the same updates);
- the budget is the first candidate N whose improvement from 0.8 N to N,
  ``(TER(0.8 N) - TER(N)) / TER(0.8 N)``, is below ``threshold``; if none is, the cap, and
  the result says that the reference had not converged by the rule.

    python -m speechmoe.tables.budget RUN.json [--out budget.json]

RUN.json is a run record of ``local/tables.py`` (its ``dev_curve``: step, dev greedy TER).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

FIRST, STEP, CAP = 2000, 1000, 8000
GRID = 200  # the validation interval (--valid-every-n) of the reference's run
THRESHOLD = 0.03  # relative improvement over the last fifth below which a run has converged
WINDOW = 3  # measurements averaged into the error rate at an update


class CurveError(ValueError):
    """A dev curve that cannot decide the budget (too short, or a gap at a needed update)."""


def ter_at(curve: Sequence[dict], step: int, window: int = WINDOW) -> float:
    """Mean dev greedy TER of the last `window` measurements at or before `step`."""
    points = [p for p in curve if p["step"] <= step]
    if len(points) < window:
        raise CurveError(f"update {step}: {len(points)} dev measurements at or before it, "
                         f"{window} needed")
    if points[-1]["step"] != step:
        raise CurveError(f"update {step}: no dev measurement there (the last before it is at "
                         f"{points[-1]['step']}); measure dev at an interval that divides "
                         f"0.8 x every candidate budget")
    return sum(p["dev_greedy_ter"] for p in points[-window:]) / window


def convergence_budget(curve: Sequence[dict], first: int = FIRST, step: int = STEP,
                       cap: int = CAP, threshold: float = THRESHOLD,
                       window: int = WINDOW, grid: int = GRID) -> dict:
    """The budget by the rule of the module docstring, with every candidate's figures."""
    curve = sorted((p for p in curve if p["step"] % grid == 0), key=lambda p: p["step"])
    if not curve or curve[-1]["step"] < cap:
        last = curve[-1]["step"] if curve else 0
        raise CurveError(f"the curve ends at update {last}, before the cap {cap}: run the "
                         "reference to the cap first")
    candidates = []
    chosen: Optional[int] = None
    for n in range(first, cap + 1, step):
        start = round(0.8 * n)
        before, after = ter_at(curve, start, window), ter_at(curve, n, window)
        if before <= 0:
            raise CurveError(f"update {start}: dev TER {before}, a relative change is undefined")
        gain = (before - after) / before
        candidates.append({"budget": n, "ter_at_0.8n": round(before, 4),
                           "ter_at_n": round(after, 4), "relative_improvement": round(gain, 4),
                           "converged": gain < threshold})
        if chosen is None and gain < threshold:
            chosen = n
    return {"budget": chosen if chosen is not None else cap,
            "converged": chosen is not None, "rule": {
                "first": first, "step": step, "cap": cap, "threshold": threshold,
                "window": window, "grid": grid}, "candidates": candidates}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_json", type=Path, help="a run record with a dev_curve")
    p.add_argument("--out", type=Path, default=None, help="write the result here (JSON)")
    p.add_argument("--first", type=int, default=FIRST)
    p.add_argument("--step", type=int, default=STEP)
    p.add_argument("--cap", type=int, default=CAP)
    args = p.parse_args(argv)
    if not args.run_json.is_file():
        print(f"{args.run_json}: not found", file=sys.stderr)
        return 1
    record = json.loads(args.run_json.read_text())
    try:
        result = convergence_budget(record.get("dev_curve", []), args.first, args.step,
                                    args.cap)
    except CurveError as exc:
        print(f"{args.run_json}: {exc}", file=sys.stderr)
        return 1
    result["run"] = str(args.run_json)
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")
    if not result["converged"]:
        print(f"not converged by the rule within {args.cap} updates: budget {args.cap}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
