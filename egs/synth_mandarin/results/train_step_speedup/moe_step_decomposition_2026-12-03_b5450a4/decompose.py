"""Where MoE-8e's extra step time goes: B1, a control that is MoE-8e
with one expert per layer (its embedding network, second input layer and CTC head kept; no
router, no dispatch) and MoE-8e itself, each in its own process on the benchmark's new path
(speechmoe.bench.train_step), their steps interleaved so that machine noise hits all alike.

    .venv/bin/python egs/synth_mandarin/results/train_step_speedup/moe_step_decomposition_2026-12-03_b5450a4/decompose.py \
        [--scale tables|paper] [--batch-seconds S --utterances U] [--repeats 20] [--warmup 5]

tables: the tables' systems at d_model 128, 60 s of audio in 21 utterances per step (the
benchmark's tables' scale); paper: egs/aishell2's paper-scale systems, 20 s in 4 utterances
(the benchmark's paper-scale command).

Prints each system's median step and update time and their ratios to B1.
"""

import argparse
import multiprocessing as mp
import statistics
from pathlib import Path

from speechmoe.bench.train_step import _worker

HERE = Path(__file__).resolve().parent
EGS = HERE.parents[3]
SCALES = {  # configs' directory, model overrides, batch seconds, utterances
    "tables": (EGS / "synth_mandarin" / "conf" / "model",
               {"d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256, "input_dim": 1008},
               60.0, 21),
    "paper": (EGS / "aishell2" / "conf" / "model", {}, 20.0, 4),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=sorted(SCALES), default="tables")
    ap.add_argument("--batch-seconds", type=float, help="default: the scale's")
    ap.add_argument("--utterances", type=int, help="default: the scale's")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    conf, overrides, seconds, utterances = SCALES[args.scale]
    seconds, utterances = args.batch_seconds or seconds, args.utterances or utterances
    systems = {"b1": conf / "b1.yaml", "moe_1e_emb": HERE / f"moe_1e_emb_{args.scale}.yaml",
               "moe_8e": conf / "moe_8e.yaml"}
    ctx = mp.get_context("spawn")
    workers = {}
    for name, config in systems.items():
        parent, child = ctx.Pipe()
        spec = {"config": str(config), "path": "new", "device": "cpu", "amp": "none",
                "batch_seconds": seconds, "utterances": utterances, "num_classes": 1585,
                "threads": 2, "model_overrides": overrides}
        proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
        proc.start()
        workers[name] = (proc, parent)

    def ask(name, *cmd):
        workers[name][1].send(cmd)
        return workers[name][1].recv()

    try:
        params = {n: ask(n, "info")["params"] for n in workers}
        for n in workers:
            ask(n, "steps", args.warmup)
        times = {n: [] for n in workers}
        for _ in range(args.repeats):
            for n in workers:
                times[n] += ask(n, "steps", 1)
    finally:
        for proc, conn in workers.values():
            conn.send(("stop",))
            proc.join(timeout=30)
    step = {n: statistics.median(r[0] for r in t) for n, t in times.items()}
    update = {n: statistics.median(r[1] for r in t) for n, t in times.items()}
    print(f"{args.scale} scale ({seconds:g} s of audio in {utterances} utterances per step, "
          f"fp32, 2 threads), median of {args.repeats} interleaved steps after "
          f"{args.warmup} each")
    print(f"{'system':<11} {'params':>7} {'step ms':>8} {'update ms':>9} {'rest ms':>8} "
          f"{'step / B1':>9}")
    for n in workers:
        print(f"{n:<11} {params[n] / 1e6:6.1f}M {step[n] * 1e3:8.1f} {update[n] * 1e3:9.1f} "
              f"{(step[n] - update[n]) * 1e3:8.1f} {step[n] / step['b1']:9.3f}")


if __name__ == "__main__":
    main()
