"""The report: every number of the tables as one JSON-able dict (one function per table),
each system's costs, and :func:`write_tables`, which writes TABLES.md and tables.json."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from speechmoe.tables.markdown import render_markdown
from speechmoe.tables.paper import (
    CLAIMS,
    DEFAULT_SET_NAMES,
    PAPER_COLUMNS,
    PAPER_PRINTED_REL_CHANGE,
    PAPER_RESULTS,
    SYSTEMS,
    TABLE_SPECS,
    paper_cer,
    paper_name,
    paper_relative_change,
)
from speechmoe.tables.runs import (
    METHODS,
    NoRunsError,
    is_number,
    load_runs,
    missing_runs,
    normalization,
    select_runs,
)
from speechmoe.tables.stats import compare, rate_stats

Runs = Mapping[str, Mapping[int, dict]]
SetNames = Mapping[str, str | None] | Sequence[str] | None

TIMING_NOTES = "TIMING_NOTES.md"
NOTE = "NOTE.md"  # beside TABLES.md, quoted under its title

# How the numbers are made, written into tables.json beside them.
_METHOD_NOTES = {
    "relative_change": "(pooled_rate_S - pooled_rate_ref) / pooled_rate_ref; pooled rate = "
                       "100 * sum of errors / sum of reference tokens over every seed and "
                       "utterance",
    "ci": "paired bootstrap over utterances: indices drawn with replacement, the same for "
          "both systems and every seed, numpy default_rng(bootstrap_seed); 2.5 / 97.5 "
          "percentiles of the resampled relative change",
    "seed_noise_criterion": "|mean_S - mean_ref| > max(std_S, std_ref), seed std with "
                            "ddof=1; n/a if either system has fewer than 2 seeds",
}


# --------------------------------------------------------------------------------------------
# Costs.

def _mean_or_none(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if is_number(v)]
    return sum(vals) / len(vals) if vals else None


def _median_or_none(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _same_or_range(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values]
    return {"value": vals[0] if len(set(vals)) == 1 else None, "min": min(vals), "max": max(vals)}


def _wfst_rtf(decode: Mapping[str, Any]) -> float | None:
    """The WFST search's real-time factor: ``wfst_rtf``, else ``decode_rtf`` (local/tables.py
    writes the latter), else None."""
    v = decode.get("wfst_rtf")
    return v if v is not None else decode.get("decode_rtf")


def system_costs(runs_of_system: Mapping[int, dict]) -> dict[str, Any]:
    """Params, MACs per second of audio, the median training seconds per epoch (over every
    epoch of every seed: one epoch slowed by something else on the machine does not move
    it; an epoch resumed from a checkpoint that did not carry its time, ``"resumed":
    "partial"``, is left out: its seconds cover only the part after the resume) and mean
    network / WFST real-time factors (over seeds) of one system."""
    if not runs_of_system:
        raise NoRunsError("no runs")
    rs = list(runs_of_system.values())
    return {
        "params": _same_or_range([r["params"] for r in rs]),
        "macs_per_second": _same_or_range([r["macs_per_second"] for r in rs]),
        "train_seconds_per_epoch": _median_or_none(
            ep["train_seconds"] for r in rs for ep in r["epochs"]
            if ep.get("resumed") != "partial"),
        "epochs": [len(r["epochs"]) for r in rs],
        "network_rtf": _mean_or_none(r["decode"].get("network_rtf") for r in rs),
        "wfst_rtf": _mean_or_none(_wfst_rtf(r["decode"]) for r in rs),
    }


# --------------------------------------------------------------------------------------------
# The report, one part per function.

class _Comparisons:
    """:func:`compare` of each (system, ref, test set, method) asked for, computed once; a
    comparison without runs is an "n/a" entry with the reason. tables.json lists them in the
    order first asked."""

    def __init__(self, runs: Runs, n_bootstrap: int, bootstrap_seed: int):
        self.runs, self.n_bootstrap, self.bootstrap_seed = runs, n_bootstrap, bootstrap_seed
        self.cache: dict[tuple[str, str, str, str], dict] = {}

    def __call__(self, system: str, ref: str, test_set: str, method: str) -> dict:
        key = (system, ref, test_set, method)
        if key not in self.cache:
            try:
                self.cache[key] = {"status": "ok", **compare(
                    self.runs, system, ref, test_set, method, n_boot=self.n_bootstrap,
                    seed=self.bootstrap_seed)}
            except NoRunsError as e:
                self.cache[key] = {"status": "n/a", "reason": str(e), "system": system,
                                   "ref": ref, "test_set": test_set, "method": method}
        return self.cache[key]

    def all(self) -> list[dict]:
        return list(self.cache.values())


def _normalise_set_names(set_names: SetNames) -> dict[str, str | None]:
    if set_names is None:
        return dict(DEFAULT_SET_NAMES)
    if isinstance(set_names, Mapping):
        return {k: v for k, v in set_names.items()}
    return {s: DEFAULT_SET_NAMES.get(s) for s in set_names}


def _system_entry(sel: Runs, s: str, sets: Mapping[str, str | None],
                  missing: list[tuple[str, int]]) -> dict[str, Any]:
    """One system's seeds, costs and rate statistics per test set and method."""
    entry: dict[str, Any] = {"paper_name": paper_name(s), "seeds": list(sel.get(s, {})),
                             "missing_seeds": [k for (x, k) in missing if x == s]}
    if s not in sel:
        entry["status"] = "no runs"
        return entry
    entry["status"] = "ok"
    entry.update(system_costs(sel[s]))
    entry["results"] = {}
    for t in sets:
        entry["results"][t] = {}
        for m in METHODS:
            try:
                entry["results"][t][m] = {"status": "ok", **rate_stats(sel, s, t, m)}
            except NoRunsError as e:
                entry["results"][t][m] = {"status": "n/a", "reason": str(e)}
    return entry


def _utterance_counts(sel: Runs, sets: Mapping[str, str | None]) -> dict[str, Any]:
    """Utterance counts per test set (from the WFST arrays of every run that has them)."""
    out: dict[str, Any] = {}
    for t in sets:
        counts = sorted({len(r["utts"][t][m]["ids"]) for by in sel.values() for r in by.values()
                         for m in METHODS if m in r["utts"].get(t, {})})
        tokens = sorted({int(r["utts"][t]["wfst"]["ref"].sum()) for by in sel.values()
                         for r in by.values() if "wfst" in r["utts"].get(t, {})})
        out[t] = {"utterances": counts, "ref_tokens_wfst": tokens}
    return out


def _table_cell(s: str, t: str, col: str | None, refs: Sequence[str],
                per_system: Mapping[str, Any], cmp: _Comparisons) -> dict[str, Any]:
    """One system on one test set in one table: ours (WFST), against each ref, the paper's."""
    if s in per_system:
        wfst = per_system[s].get("results", {}).get(t, {}).get(
            "wfst", {"status": "n/a", "reason": f"{s}: no runs"})
    else:
        wfst = {"status": "not requested"}
    cell: dict[str, Any] = {
        "paper_column": col,
        "paper_cer": paper_cer(s, col),
        "paper_rel_change": {r: paper_relative_change(s, r, col) for r in refs if r != s},
        "wfst": wfst,
        "vs": {},
    }
    for r in refs:
        if r != s:
            cell["vs"][r] = cmp(s, r, t, "wfst")
    return cell


def _table_row(tid: str, s: str, refs: Sequence[str], sets: Mapping[str, str | None],
               per_system: Mapping[str, Any], cmp: _Comparisons) -> dict[str, Any]:
    mine = per_system.get(s, {})
    row: dict[str, Any] = {"system": s, "name": paper_name(s, tid),
                           "status": mine.get("status", "not requested"),
                           "seeds": mine.get("seeds", []),
                           "missing_seeds": mine.get("missing_seeds", []),
                           "paper": {"params": PAPER_RESULTS.get(s, {}).get("params"),
                                     "flops": PAPER_RESULTS.get(s, {}).get("flops")},
                           "sets": {}}
    if row["status"] == "ok":
        for k in ("params", "macs_per_second", "train_seconds_per_epoch", "network_rtf",
                  "wfst_rtf"):
            row[k] = per_system[s][k]
    for t, col in sets.items():
        row["sets"][t] = _table_cell(s, t, col, refs, per_system, cmp)
    return row


def _table(tid: str, spec: Mapping[str, Any], sets: Mapping[str, str | None],
           per_system: Mapping[str, Any], cmp: _Comparisons) -> dict[str, Any]:
    """One of the paper's Tables 1-3 (:data:`TABLE_SPECS`)."""
    rows = [_table_row(tid, s, spec["refs"], sets, per_system, cmp) for s in spec["systems"]]
    return {"title": spec["title"], "systems": list(spec["systems"]),
            "refs": list(spec["refs"]), "rows": rows}


def _greedy(systems: Sequence[str], sets: Mapping[str, str | None],
            per_system: Mapping[str, Any], cmp: _Comparisons) -> dict[str, Any]:
    """Greedy CTC (a different metric): per test set, every system against B1."""
    greedy: dict[str, Any] = {}
    for t in sets:
        rows = []
        for s in systems:
            st = per_system[s].get("results", {}).get(t, {}).get(
                "ctc_greedy", {"status": "n/a", "reason": f"{s}: no runs"})
            rows.append({"system": s, "name": paper_name(s), "stats": st,
                         "vs_b1": None if s == "b1" else cmp(s, "b1", t, "ctc_greedy")})
        greedy[t] = rows
    return greedy


def _ordering(better: str, worse: str, t: str, col: str | None,
              cmp: _Comparisons) -> dict[str, Any]:
    """Whether one of the paper's orderings (:data:`CLAIMS`) holds on one test set, ours and
    the paper's."""
    c = cmp(better, worse, t, "wfst")
    item: dict[str, Any] = {"better": better, "worse": worse, "test_set": t, "paper_column": col}
    if c["status"] == "ok":
        item.update(status="ok", mean_better=c["mean"], mean_worse=c["mean_ref"],
                    holds=bool(c["mean"] < c["mean_ref"]),
                    exceeds_seed_noise=c["exceeds_seed_noise"],
                    ci_low=c["ci_low"], ci_high=c["ci_high"],
                    ci_excludes_zero=c["ci_excludes_zero"], rel_change=c["rel_change"])
    else:
        item.update(status="n/a", reason=c["reason"], holds=None)
    pb, pw = paper_cer(better, col), paper_cer(worse, col)
    item["paper_better"], item["paper_worse"] = pb, pw
    item["holds_in_paper"] = None if pb is None or pw is None else bool(pb < pw)
    return item


def _paper_part() -> dict[str, Any]:
    """The paper's numbers and its relative changes against B1 and B2."""
    rel = {ref: {s: {c: paper_relative_change(s, ref, c) for c in PAPER_COLUMNS}
                 for s in PAPER_RESULTS if s != ref} for ref in ("b1", "b2")}
    return {"results": PAPER_RESULTS, "relative_change": rel,
            "printed_relative_change_percent": PAPER_PRINTED_REL_CHANGE}


def build_report(runs: Runs, systems: Sequence[str] = SYSTEMS,
                 seeds: Sequence[int] | None = None, set_names: SetNames = None,
                 n_bootstrap: int = 1000, bootstrap_seed: int = 0) -> dict[str, Any]:
    """Every number of the tables as a JSON-able dict (see :func:`write_tables`)."""
    sets = _normalise_set_names(set_names)
    if seeds is None:
        seeds = sorted({k for s in systems for k in runs.get(s, {})})
    seeds = [int(k) for k in seeds]
    sel = select_runs(runs, systems, seeds)
    if not sel:
        raise NoRunsError(f"none of the systems {', '.join(systems)} has a run for seeds "
                          f"{', '.join(map(str, seeds))}")
    norm = normalization(sel)
    missing = missing_runs(sel, systems, seeds)
    cmp = _Comparisons(sel, n_bootstrap, bootstrap_seed)
    per_system = {s: _system_entry(sel, s, sets, missing) for s in systems}
    # Built in this order: the comparisons are listed in the order first asked for.
    tables = {tid: _table(tid, spec, sets, per_system, cmp) for tid, spec in TABLE_SPECS.items()}
    greedy = _greedy(systems, sets, per_system, cmp)
    orderings = [_ordering(b, w, t, col, cmp) for b, w in CLAIMS for t, col in sets.items()]
    meta = {
        "systems": list(systems), "seeds": seeds, "set_names": sets,
        "seeds_found": {s: per_system[s]["seeds"] for s in systems},
        "missing_runs": [[s, k] for s, k in missing],
        "systems_without_runs": [s for s in systems if per_system[s]["status"] != "ok"],
        "normalization": norm, "utterance_counts": _utterance_counts(sel, sets),
        "n_bootstrap": n_bootstrap, "bootstrap_seed": bootstrap_seed, "ci_level": 0.95,
        **_METHOD_NOTES,
    }
    return {"meta": meta, "paper": _paper_part(), "systems": per_system, "tables": tables,
            "greedy": greedy, "comparisons": cmp.all(), "orderings": orderings}


# --------------------------------------------------------------------------------------------
# Writing.

def _jsonable(x: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if np is not None and isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if np is not None and isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_tables(tables_dir: str | Path, out_md: str | Path | None = None,
                 out_json: str | Path | None = None, systems: Sequence[str] = SYSTEMS,
                 seeds: Sequence[int] | None = (1, 2, 3), set_names: SetNames = None, *,
                 n_bootstrap: int = 1000, bootstrap_seed: int = 0,
                 runs: Runs | None = None, figures: Sequence[str] = ()) -> dict[str, Any]:
    """Write TABLES.md and the JSON of every number; returns the report dict.

    ``out_md`` / ``out_json`` default to ``<tables_dir>/TABLES.md`` and ``tables.json``.
    ``set_names`` maps our test sets to the paper's columns (default
    :data:`~speechmoe.tables.paper.DEFAULT_SET_NAMES`; a list of set names looks the columns
    up there). ``seeds=None`` takes every seed found. ``runs`` skips loading (already from
    :func:`~speechmoe.tables.runs.load_runs`). ``figures`` are linked at the end.
    A ``runs/TIMING_NOTES.md`` (what disturbed the runs' wall times) is linked from the costs;
    a ``NOTE.md`` beside TABLES.md (hand-written) is quoted under its title.
    """
    tables_dir = Path(tables_dir)
    if runs is None:
        runs = load_runs(tables_dir, systems, seeds)
    report = build_report(runs, systems, seeds, set_names, n_bootstrap, bootstrap_seed)
    note = tables_dir / NOTE
    if note.is_file():  # written by hand: what later studies say about these tables
        report["meta"]["note"] = note.read_text(encoding="utf-8")
    notes = tables_dir / "runs" / TIMING_NOTES
    if notes.is_file():  # written by hand beside the runs: what disturbed their wall times
        report["meta"]["timing_notes"] = f"runs/{TIMING_NOTES}"
    out_md = Path(out_md) if out_md is not None else tables_dir / "TABLES.md"
    out_json = Path(out_json) if out_json is not None else tables_dir / "tables.json"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(render_markdown(report, figures), encoding="utf-8")
    out_json.write_text(json.dumps(_jsonable(report), indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    return report
