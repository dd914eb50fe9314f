"""The data-scaling study (egs/synth_mandarin/run_scaling.sh): one tables directory per amount
of training audio, each with runs/<system>/seed<k>.json as local/tables.py writes them; here
the comparison of every system with the reference (B1) at each size, the rule's verdict, the
dev curves, SCALING.md, scaling.json and the figure.

The rule (results/scaling/RULE.md, fixed before the first run): a system beats the reference
at a size and on a test set when its pooled WFST error rate is lower, the 95% paired-bootstrap
interval of the relative change excludes 0, and the gap between the seed means is larger
than both systems' seed standard deviations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechmoe.tables.runs import NoRunsError, TablesError, load_runs
from speechmoe.tables.stats import compare, rate_stats, seed_stats

RULE = ("a system beats the reference on a test set when its pooled WFST error rate is lower, "
        "the 95% paired-bootstrap interval of the relative change excludes 0, and the gap "
        "between the seed means exceeds both seed standard deviations")


def verdict(c: Mapping[str, Any]) -> str:
    """"better", "worse" (the same rule, mirrored) or "no difference" for one comparison."""
    if c.get("status") != "ok" or c.get("exceeds_seed_noise") is None:
        return "n/a"
    if not (c["ci_excludes_zero"] and c["exceeds_seed_noise"]):
        return "no difference"
    return "better" if c["rel_change"] < 0 else "worse"


NOTE = "NOTE.md"  # beside SCALING.md, hand-written: what the trend says

DEV_RULE = ("on dev, a system beats another when its mean final dev greedy TER is lower by "
            "more than both systems' seed standard deviations")


def dev_verdict(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """System a against b on dev (the seed stats of their final dev greedy TER)."""
    gap = a["mean"] - b["mean"]
    if a.get("std") is None or b.get("std") is None:
        return {"gap": gap, "threshold": None, "verdict": "n/a (one seed)"}
    threshold = max(a["std"], b["std"])
    return {"gap": gap, "threshold": threshold,
            "verdict": "no difference" if abs(gap) <= threshold else
            ("better" if gap < 0 else "worse")}


def _size_hours(runs: Mapping[str, Mapping[int, dict]], size: str) -> float:
    hours = {round(float(r["train_hours"]), 3) for by_seed in runs.values()
             for r in by_seed.values()}
    if len(hours) != 1:
        raise TablesError(f"size {size}: runs trained on different amounts of audio {hours}")
    return hours.pop()


def _dev_final(runs_of_system: Mapping[int, dict]) -> dict[str, Any]:
    """Seed stats of the last dev greedy TER, and the mean dev curve over seeds (the steps
    every seed measured). A curve's steps count all updates: those of an upcycled run's
    dense base (its record's base_updates) come before its own."""
    finals = [r["epochs"][-1]["dev_greedy_ter"] for r in runs_of_system.values()]
    curves = [{p["step"] + int(r.get("base_updates", 0)): p["dev_greedy_ter"]
               for p in r.get("dev_curve", [])} for r in runs_of_system.values()]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return {**seed_stats(finals), "values": finals,
            "curve": [{"step": s, "dev_greedy_ter": sum(c[s] for c in curves) / len(curves)}
                      for s in steps]}


def scaling_report(results_dir: str | Path, sizes: Sequence[str], systems: Sequence[str],
                   seeds: Sequence[int], test_sets: Sequence[str], reference: str = "b1",
                   method: str = "wfst", n_boot: int = 1000, bootstrap_seed: int = 0,
                   optional: Sequence[str] = (), dev_pairs: Sequence[tuple[str, str]] = (),
                   pairs: Sequence[tuple[str, str]] = ()) -> dict:
    """Every number of SCALING.md as one JSON-able dict. A size without runs is listed as
    missing; a comparison whose systems lack runs is an "n/a" entry with the reason. A
    system of ``optional`` (run at some sizes only; "system@size": not run at that size)
    with no run at a size is left out there, not listed as missing. Every system is compared
    with the reference on the test sets by RULE, and each (a, b) of ``pairs`` a with b (MoE-8e
    with its own backbone, say); on dev every system with the reference, and each (a, b) of
    ``dev_pairs`` a with b, by DEV_RULE."""
    results_dir = Path(results_dir)
    out: dict[str, Any] = {"reference": reference, "method": method, "rule": RULE,
                           "dev_rule": DEV_RULE,
                           "test_sets": list(test_sets), "sizes": [], "missing": []}
    for size in sizes:
        skip = {o for o in optional if "@" not in o} | {
            o.split("@", 1)[0] for o in optional if o.endswith("@" + size)}
        tables_dir = results_dir / size
        try:
            runs = load_runs(tables_dir, systems, seeds)
        except TablesError:
            runs = {}
        missing = [f"{s}/seed{k}" for s in systems for k in seeds if k not in runs.get(s, {})
                   and not (s in skip and s not in runs)]
        out["missing"] += [f"{size}: {m}" for m in missing]
        if not runs:
            continue
        entry: dict[str, Any] = {"size": size, "hours": _size_hours(runs, size),
                                 "systems": {}, "comparisons": [], "dev_comparisons": []}
        for s in systems:
            if s not in runs:
                continue
            rates = {}
            for t in test_sets:
                try:
                    rates[t] = rate_stats(runs, s, t, method)
                except NoRunsError as e:
                    rates[t] = {"status": "n/a", "reason": str(e)}
            entry["systems"][s] = {"seeds": list(runs[s]), "rates": rates,
                                   "dev": _dev_final(runs[s])}
        against = [(s, reference) for s in systems
                   if s != reference and not (s in skip and s not in runs)]
        against += [(a, b) for a, b in pairs if a in runs and b in runs]
        for s, ref in against:
            for t in test_sets:
                try:
                    c = {"status": "ok", **compare(runs, s, ref, t, method,
                                                   n_boot=n_boot, seed=bootstrap_seed)}
                except NoRunsError as e:
                    c = {"status": "n/a", "reason": str(e), "system": s, "ref": ref,
                         "test_set": t}
                c["verdict"] = verdict(c)
                entry["comparisons"].append(c)
        dev = {s: d["dev"] for s, d in entry["systems"].items()}
        for a, b in [(s, reference) for s in dev if s != reference] + list(dev_pairs):
            if a in dev and b in dev:
                entry["dev_comparisons"].append({"system": a, "ref": b,
                                                 **dev_verdict(dev[a], dev[b])})
        out["sizes"].append(entry)
    if not out["sizes"]:
        raise NoRunsError(f"{results_dir}: no finished run at any size ({', '.join(sizes)})")
    return out


def _pct(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


TITLE = "Where SpeechMoE's gain appears: the data-scaling study"


def scaling_markdown(report: Mapping[str, Any], figure: str | None = None,
                     note: str | None = None) -> str:
    """SCALING.md. ``note`` (a hand-written NOTE.md beside it: what the trend says) is quoted
    under its own heading after the rule."""
    ref = report["reference"]
    lines = [f"# {report.get('title', TITLE)}", "",
             f"Every run: the same budget of updates; WFST error rates on the test sets, pooled "
             f"over seeds; each system against {ref} with a 95% paired-bootstrap interval over "
             f"utterances. Rule, fixed before the first run: {report['rule']}; "
             f"{report.get('dev_rule', DEV_RULE)}.", ""]
    if note and note.strip():
        lines += ["## What the trend says (written by hand, from the numbers below)", "",
                  *[f"> {line}" if line else ">" for line in note.strip().splitlines()], ""]
    for entry in report["sizes"]:
        lines += [f"## {entry['size']} ({entry['hours']:.2f} h of distinct training audio)", "",
                  "| system | seeds | final dev greedy TER (mean ± std) | "
                  + " | ".join(f"{t} (pooled, mean ± std)" for t in report["test_sets"]) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in report["test_sets"]) + " |"]
        for s, d in entry["systems"].items():
            dev = d["dev"]
            cells = []
            for t in report["test_sets"]:
                r = d["rates"][t]
                cells.append("n/a" if r.get("status") == "n/a" else
                             f"{r['metric']} {r['pooled_rate']:.2f} ({r['mean']:.2f} ± "
                             f"{_pct(r['std'])}, {r['utterances']} utts)")
            lines.append(f"| {s} | {len(d['seeds'])} | {dev['mean']:.2f} ± {_pct(dev['std'])} "
                         f"| " + " | ".join(cells) + " |")
        refs = {c["ref"] for c in entry["comparisons"]}
        named = refs != {ref}  # other pairs too: each row names its reference

        def who(c):
            return f"{c['system']} vs {c['ref']}" if named else c["system"]

        lines += ["", f"| system vs {'reference' if named else ref} | test set | relative "
                  "change | 95% CI | seed-mean gap | larger seed std | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in entry["comparisons"]:
            if c["status"] != "ok":
                lines.append(f"| {who(c)} | {c['test_set']} | n/a | | | | {c['reason']} |")
                continue
            lines.append(
                f"| {who(c)} | {c['test_set']} | {100 * c['rel_change']:+.1f}% | "
                f"[{100 * c['ci_low']:+.1f}%, {100 * c['ci_high']:+.1f}%] | "
                f"{c['mean_diff']:+.2f} | {_pct(c['noise_threshold'])} | {c['verdict']} |")
        if entry.get("dev_comparisons"):
            lines += ["", "| on dev | against | mean gap of final dev greedy TER | larger seed "
                      "std | verdict |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {c['system']} | {c['ref']} | {c['gap']:+.2f} | "
                      f"{_pct(c['threshold'])} | {c['verdict']} |"
                      for c in entry["dev_comparisons"]]
        lines.append("")
    if report["missing"]:
        lines += ["Runs not finished yet: " + ", ".join(report["missing"]) + ".", ""]
    if figure:
        lines += [f"![relative change against {ref} by hours of training audio]({figure})", ""]
    return "\n".join(lines)


def plot_scaling(report: Mapping[str, Any], out_png: str | Path, system: str = "moe_8e") -> Path:
    """Left: system's relative change against the reference per test set by hours (the 95%
    CI as bars, each seed's rate against the reference's pooled rate as rings); right: the
    dev greedy TER curves of every system at every size."""
    from speechmoe.tables.figures import _figure, _save

    fig = _figure(11, 4.2)
    ax, ax_dev = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    n_sets = len(report["test_sets"])
    for i, t in enumerate(report["test_sets"]):
        pts = [(e, c) for e in report["sizes"] for c in e["comparisons"]
               if c["status"] == "ok" and c["system"] == system and c["test_set"] == t]
        if not pts:
            continue
        nudge = 1.0 + 0.04 * (i - (n_sets - 1) / 2)  # test sets side by side on the log axis
        xs = [e["hours"] * nudge for e, _ in pts]
        ys = [100 * c["rel_change"] for _, c in pts]
        err = [[100 * (c["rel_change"] - c["ci_low"]) for _, c in pts],
               [100 * (c["ci_high"] - c["rel_change"]) for _, c in pts]]
        line = ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=t)
        # the seed spread: each seed's rate against the reference's pooled rate
        sx, sy = [], []
        for (e, c), x in zip(pts, xs):
            by_seed = e["systems"][system]["rates"][t].get("rates_by_seed", {})
            sx += [x] * len(by_seed)
            sy += [100 * (r / c["pooled_rate_ref"] - 1) for r in by_seed.values()]
        ax.scatter(sx, sy, s=14, facecolors="none", edgecolors=line[0].get_color(), lw=0.8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    hours = [e["hours"] for e in report["sizes"]]
    ax.set_xticks(hours, [f"{h:.3g}" for h in hours])  # the sizes, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel("hours of distinct training audio")
    ax.set_ylabel(f"{system} vs {report['reference']}: relative change of CER (%)")
    ax.set_title("pooled over seeds, 95% CI; rings: single seeds", fontsize=8)
    ax.legend(fontsize=8)
    styles = ["-", "--", ":"]  # by size; a colour per system
    colours = {}
    for i, e in enumerate(report["sizes"]):
        for s, d in e["systems"].items():
            curve = d["dev"]["curve"]
            colour = colours.setdefault(s, f"C{len(colours)}")
            if curve:
                ax_dev.plot([p["step"] for p in curve], [p["dev_greedy_ter"] for p in curve],
                            styles[i % 3], color=colour, label=f"{s} {e['size']}")
    ax_dev.set_xlabel("updates (an upcycled run's after its dense base's)")
    ax_dev.set_ylabel("dev greedy TER (%), mean over seeds")
    ax_dev.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter

    ax_dev.yaxis.set_major_formatter(ScalarFormatter())  # 6, 10, 20, not powers of ten
    ax_dev.yaxis.set_minor_formatter(ScalarFormatter())
    ax_dev.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, out_png)


def write_scaling(report: Mapping[str, Any], results_dir: str | Path,
                  system: str = "moe_8e") -> list[Path]:
    results_dir = Path(results_dir)
    png = plot_scaling(report, results_dir / "scaling.png", system)
    md = results_dir / "SCALING.md"
    note = results_dir / NOTE
    md.write_text(scaling_markdown(report, png.name,
                                   note.read_text(encoding="utf-8") if note.is_file() else None),
                  encoding="utf-8")
    js = results_dir / "scaling.json"
    js.write_text(json.dumps(report, indent=1) + "\n")
    return [md, js, png]
