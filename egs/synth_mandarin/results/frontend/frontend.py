#!/usr/bin/env python3
"""The front-end study's records and report (run_frontends.sh; the rule: RULE.md).

    python results/frontend/frontend.py collect --name mel80 --seed 42 \
        --exp-dir exp/frontend/mel80/seed42 --out results/frontend/runs/mel80_seed42
    python results/frontend/frontend.py report --runs results/frontend/runs --out results/frontend

collect copies a finished run's results.json and results_detail.json (stage 6) and writes
run.json (candidate, seed, features, corpus, averaged checkpoint, machine) and utts.json.gz
(per set and method, each utterance's errors and reference tokens, for the paired
bootstrap). report reads every collected run and writes frontend.json and FRONTEND.md:
per candidate the dev_unseen WFST CER of each seed, the seed mean and standard deviation,
the toned-syllable error, the other sets; then step 1's choice, step 2's decision and,
when pitch stays, step 3's device model (RULE.md's addendum), as far as their runs exist
(the rest are listed as not run).
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
from pathlib import Path

from speechmoe.expdir import ExpDir
from speechmoe.features import FeatureConfig
from speechmoe.scoring import read_utt_errors
from speechmoe.tables.stats import paired_bootstrap
from speechmoe.utils import cpu_description

CANDIDATES = ["mel40_pitch", "mel40", "mel80", "mel120"]
REFERENCE = "mel40_pitch"
DISTILLED = [c + "_distill" for c in CANDIDATES[1:]]  # RULE.md's addendum: the device model D
MEASURE = ("dev_unseen", "wfst")
STEP1_SEED = 42
FINAL_SEEDS = 3
TIE = 0.1        # points: a larger front end within this of a smaller one loses to it
MIN_MARGIN = 0.3  # points: the decision's floor on the allowed gap
SETS = ["dev_unseen", "dev", "test_read", "test_chat", "test_spon"]


def collect(args) -> int:
    exp = ExpDir(args.exp_dir)
    finished = exp.finished_decodes()
    if not finished or not exp.results.is_file():
        sys.exit(f"frontend.py: {args.exp_dir} has no scored decoding (stages 5-6)")
    decode = finished[-1]
    params = json.loads((args.exp_dir / "params.json").read_text())
    train = params["train"]
    cmvn = Path(train["cmvn"])
    utts = {}
    for set_dir in sorted(decode.root.glob("*/*/utt_errors.tsv")):
        method, name = set_dir.parent.parent.name, set_dir.parent.name
        utts.setdefault(name, {})[method] = [list(r) for r in read_utt_errors(set_dir)]
    if MEASURE[0] not in utts or MEASURE[1] not in utts[MEASURE[0]]:
        sys.exit(f"frontend.py: {decode.root} has no {MEASURE[1]} decoding of {MEASURE[0]}")
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("results.json", "results_detail.json"):
        shutil.copy(args.exp_dir / f, tmp / f)
    with gzip.open(tmp / "utts.json.gz", "wt", encoding="utf-8") as f:
        json.dump(utts, f)
    run = {"candidate": args.name, "seed": args.seed, "exp_dir": str(args.exp_dir),
           "features": FeatureConfig.for_cmvn(cmvn).to_dict(), "cmvn": str(cmvn),
           "corpus": params.get("corpus"), "decoded": decode.model,
           "seed_in_params": train.get("seed"), "machine": cpu_description(),
           "command": f"./run_frontends.sh --candidates {args.name} --seeds {args.seed}"}
    if run["seed_in_params"] != args.seed:
        sys.exit(f"frontend.py: {args.exp_dir} was trained with seed "
                 f"{run['seed_in_params']}, not {args.seed}")
    (tmp / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(f"collected {args.name} seed {args.seed} into {args.out}")
    return 0


def load_runs(runs_dir: Path) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = {}
    for d in sorted(runs_dir.glob("*_seed*")):
        if not (d / "results.json").is_file() or d.name.endswith(".tmp"):
            continue
        run = json.loads((d / "run.json").read_text())
        with gzip.open(d / "utts.json.gz", "rt", encoding="utf-8") as f:
            run["utts"] = json.load(f)
        run["results"] = json.loads((d / "results.json").read_text())
        run["detail"] = json.loads((d / "results_detail.json").read_text())
        runs.setdefault(run["candidate"], {})[run["seed"]] = run
    return runs


def rate(run: dict, name: str, method: str) -> float:
    return run["results"][name][method]["rate"]


def spread(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value); an error for none."""
    if not values:
        raise ValueError("a mean over 0 runs")
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def pooled(runs: list[dict], name: str, method: str) -> tuple[list[str], list[int], list[int]]:
    """Utterance ids, errors and reference tokens summed over runs (same utterances)."""
    tables = [{u: (e, n) for u, e, n in r["utts"][name][method]} for r in runs]
    ids = sorted(tables[0])
    if any(sorted(t) != ids for t in tables[1:]):
        raise ValueError(f"{name}: the runs scored different utterances")
    return (ids, [sum(t[u][0] for t in tables) for u in ids],
            [sum(t[u][1] for t in tables) for u in ids])


def report(args) -> int:
    runs = load_runs(args.runs)
    if not runs:
        sys.exit(f"frontend.py: no collected runs under {args.runs}")
    summary: dict = {"rule": "results/frontend/RULE.md", "measure": "WFST CER on dev_unseen",
                     "candidates": {}}
    lines = ["# A front end that sherpa-onnx computes: the study's results", "",
             "The rule: [RULE.md](RULE.md), written before the first result. Generated by "
             "`python results/frontend/frontend.py report` from `runs/`; each run's command, "
             "features, corpus and machine are in its `run.json`.", "",
             "| candidate | seeds | dev_unseen WFST CER per seed | mean | std | toned SER "
             "(greedy) | " + " | ".join(s for s in SETS[1:]) + " |",
             "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in SETS[1:])
             + " |"]
    for cand in CANDIDATES + [d for d in DISTILLED if d in runs]:
        by_seed = runs.get(cand, {})
        if not by_seed:
            summary["candidates"][cand] = {"not_run": True}
            lines.append(f"| `{cand}` | not run | | | | | " + " | ".join("" for _ in SETS[1:])
                         + " |")
            continue
        seeds = sorted(by_seed)
        cers = [rate(by_seed[s], *MEASURE) for s in seeds]
        mean, std = spread(cers)
        toned = spread([by_seed[s]["detail"][MEASURE[0]]["ctc_greedy"]["toned_syllable_er"]
                        for s in seeds])[0]
        others = {}
        for name in SETS[1:]:
            have = [rate(by_seed[s], name, "wfst") for s in seeds
                    if name in by_seed[s]["results"]]
            others[name] = spread(have)[0] if have else None
        n_utts = by_seed[seeds[0]]["results"][MEASURE[0]]["wfst"]["utterances"]
        n_chars = by_seed[seeds[0]]["results"][MEASURE[0]]["wfst"]["ref_tokens"]
        summary["candidates"][cand] = {
            "seeds": seeds, "dev_unseen_cer": cers, "mean": round(mean, 3),
            "std": None if std is None else round(std, 3), "toned_ser_mean": round(toned, 2),
            "utterances": n_utts, "characters": n_chars,
            "other_sets_wfst_cer_mean": {k: None if v is None else round(v, 2)
                                         for k, v in others.items()},
            "features": by_seed[seeds[0]]["features"], "corpus": by_seed[seeds[0]]["corpus"]}
        lines.append(
            f"| `{cand}` | {', '.join(map(str, seeds))} | "
            f"{' / '.join(f'{c:.2f}' for c in cers)} | {mean:.2f} | "
            f"{'' if std is None else f'{std:.2f}'} | {toned:.2f} | "
            + " | ".join("" if v is None else f"{v:.2f}" for v in others.values()) + " |")
    first = [summary["candidates"][c] for c in CANDIDATES]
    n_utts = next(c["utterances"] for c in first if "utterances" in c)
    n_chars = next(c["characters"] for c in first if "characters" in c)
    lines += ["", f"dev_unseen: {n_utts} utterances, {n_chars} characters. The other sets' "
              "columns are WFST CER seed means, reported, never used to choose.", ""]
    decision = decide(runs)
    summary["decision"] = decision
    lines += ["## The rule applied", ""] + [f"- {d}" for d in decision["said"]] + [""]
    (args.out / "frontend.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "FRONTEND.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def decide(runs: dict) -> dict:
    """Step 1's choice, step 2's decision and step 3's device model (RULE.md), as far as
    the runs go."""
    said, out = [], {"step1": None, "step2": None}
    step1 = {c: runs[c][STEP1_SEED] for c in CANDIDATES
             if c != REFERENCE and STEP1_SEED in runs.get(c, {})}
    missing = [c for c in CANDIDATES if STEP1_SEED not in runs.get(c, {})]
    if missing:
        said.append(f"Step 1 is not complete: seed {STEP1_SEED} of {', '.join(missing)} "
                    "not run.")
        out["not_run"] = missing
        return {**out, "said": said}
    best = None
    for cand in CANDIDATES[1:]:  # fewest bands first: a later one must beat it by > TIE
        cer = rate(step1[cand], *MEASURE)
        if best is None or cer < rate(step1[best], *MEASURE) - TIE:
            best = cand
    out["step1"] = best
    said.append(f"Step 1 (seed {STEP1_SEED}): the best pitch-free candidate is `{best}` "
                f"({rate(step1[best], *MEASURE):.2f}% against "
                + ", ".join(f"`{c}` {rate(step1[c], *MEASURE):.2f}%" for c in step1
                            if c != best) + ").")
    pair = {c: runs.get(c, {}) for c in (REFERENCE, best)}
    short = {c: FINAL_SEEDS - len(r) for c, r in pair.items() if len(r) < FINAL_SEEDS}
    if short:
        said.append("Step 2 is not complete: " + ", ".join(
            f"`{c}` has {len(pair[c])} of {FINAL_SEEDS} seeds" for c in short) + ".")
        return {**out, "said": said}
    stats = {c: spread([rate(r, *MEASURE) for r in pair[c].values()]) for c in pair}
    gap = stats[best][0] - stats[REFERENCE][0]
    allowed = max(stats[REFERENCE][1], MIN_MARGIN)
    ids, e_p, n_p = pooled(list(pair[best].values()), *MEASURE)
    _, e_r, n_r = pooled(list(pair[REFERENCE].values()), *MEASURE)
    boot = paired_bootstrap(e_p, n_p, e_r, n_r, n_boot=1000, seed=0)
    adopt = gap <= allowed
    out["step2"] = {"candidate": best, "gap_points": round(gap, 3),
                    "allowed_points": round(allowed, 3), "adopt": adopt,
                    "bootstrap": boot, "utterances": len(ids)}
    said.append(
        f"Step 2 ({FINAL_SEEDS} seeds each): `{best}` {stats[best][0]:.2f} ± "
        f"{stats[best][1]:.2f} against `{REFERENCE}` {stats[REFERENCE][0]:.2f} ± "
        f"{stats[REFERENCE][1]:.2f}: a gap of {gap:+.2f} points, allowed {allowed:.2f} "
        f"(max of the reference's seed std and {MIN_MARGIN}). Relative change of the pooled "
        f"CER {100 * boot['rel_change']:+.1f}%, 95% paired bootstrap "
        f"[{100 * boot['ci_low']:+.1f}%, {100 * boot['ci_high']:+.1f}%] over {len(ids)} "
        "utterances.")
    said.append(f"Decision: `{best}` becomes the recipe's default front end." if adopt else
                f"Decision: pitch stays for the server model; a pitch-free device model "
                f"is next (RULE.md).")
    if not adopt:
        out["step3"] = device_model(runs, best, stats[best][0], said)
    return {**out, "said": said}


def device_model(runs: dict, best: str, mean_a: float, said: list[str]) -> dict:
    """Step 3 (RULE.md's addendum): A = `best` on its own (its step-2 seeds), D = `best`'s
    front end distilled from mel40_pitch. D must beat A's seed mean by more than TIE, at
    seed 42 first (3a) and then over 3 seeds (3b); otherwise A, which needs no teacher."""
    distilled = f"{best}_distill"
    d_runs = runs.get(distilled, {})
    out: dict = {"A": best, "D": distilled, "A_mean": round(mean_a, 3)}
    if STEP1_SEED not in d_runs:
        said.append(f"Step 3a is not run: `{distilled}` seed {STEP1_SEED} "
                    f"(`./run_frontends.sh --candidates {distilled}`).")
        return {**out, "device_model": None}
    first = rate(d_runs[STEP1_SEED], *MEASURE)
    out["D_seed42"] = first
    if not first < mean_a - TIE:
        said.append(f"Step 3a: `{distilled}` seed {STEP1_SEED} {first:.2f}% is not below "
                    f"A's mean {mean_a:.2f}% by more than {TIE} points: the device model is "
                    f"`{best}` trained on its own (A); step 3b is not run.")
        return {**out, "device_model": best}
    if len(d_runs) < FINAL_SEEDS:
        said.append(f"Step 3a: `{distilled}` seed {STEP1_SEED} {first:.2f}% is below A's "
                    f"mean {mean_a:.2f}% by more than {TIE} points. Step 3b is not complete: "
                    f"`{distilled}` has {len(d_runs)} of {FINAL_SEEDS} seeds.")
        return {**out, "device_model": None}
    mean_d, std_d = spread([rate(r, *MEASURE) for r in d_runs.values()])
    chosen = distilled if mean_d < mean_a - TIE else best
    out.update(D_mean=round(mean_d, 3), D_std=round(std_d, 3), device_model=chosen)
    said.append(f"Step 3b ({FINAL_SEEDS} seeds): `{distilled}` {mean_d:.2f} ± {std_d:.2f} "
                f"against A's {mean_a:.2f}: the device model is `{chosen}`"
                + (" (distilled)." if chosen == distilled else
                   " trained on its own (A): D is not more than "
                   f"{TIE} points better, and A needs no teacher."))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--name", required=True, choices=CANDIDATES + DISTILLED)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--exp-dir", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report")
    r.add_argument("--runs", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    return collect(args) if args.cmd == "collect" else report(args)


if __name__ == "__main__":
    sys.exit(main())
