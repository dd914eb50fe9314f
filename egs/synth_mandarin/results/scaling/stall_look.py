#!/usr/bin/env python3
"""What a stalled routed run's logs show, next to a healthy seed's (issue 19).

    cd egs/synth_mandarin
    python3 results/scaling/stall_look.py exp/scaling/70h/moe_8e_freeze/seed{1,2} \\
        > results/scaling/70h/stall_moe_8e_freeze.txt

Per run, every 250 updates: dev CTC and greedy TER (log/valid.jsonl, log/epochs.jsonl), the dev routing churn
(share of dev frames whose expert changed since the previous validation), the median and
largest training CTC loss and gradient norm of the 250 updates before (log/losses.jsonl),
and per MoE layer the smallest expert's share of the frames (log/routing.jsonl; 0.125 is
even at 8 experts). Reads only the run's logs; standard library only.
"""
import json
import statistics
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def look(run: Path) -> list[str]:
    valid = {r["step"]: r for r in rows(run / "log" / "valid.jsonl")}
    for r in rows(run / "log" / "epochs.jsonl"):  # the end of an epoch (the last update)
        valid.setdefault(r["step"], r)
    losses = rows(run / "log" / "losses.jsonl")
    routing = {r["step"]: r for r in rows(run / "log" / "routing.jsonl")}
    out = [f"## {run}", "",
           "step  dev_ctc  dev_TER  churn  ctc_med  ctc_max  gnorm_med  gnorm_max  "
           "smallest expert share per layer"]
    for step in sorted(valid):
        v = valid[step]
        seg = [r for r in losses if step - 250 < r["step"] <= step]
        ctc = [r["ctc"] for r in seg]
        gn = [r["grad_norm"] for r in seg]
        churn = v.get("dev_routing_churn")
        shares = routing.get(step, {}).get("layers", [])
        out.append(
            f"{step:4d}  {v['dev_ctc']:7.3f}  {v['dev_greedy_ter']:7.2f}  "
            f"{'  n/a' if churn is None else f'{churn:5.3f}'}  "
            f"{statistics.median(ctc):7.2f}  {max(ctc):7.2f}  {statistics.median(gn):9.2f}  "
            f"{max(gn):9.2f}  " + " ".join(f"{min(l['fraction']):.3f}" for l in shares))
    return out + [""]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        print("\n".join(look(Path(arg))))
