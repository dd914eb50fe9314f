"""The paper's Tables 1-3 and Figure 2 from per-run result files, with seeds and error bars.

``python -m speechmoe.tables --tables-dir DIR`` writes ``TABLES.md``, ``tables.json``,
``fig2_dev_loss.png`` and ``routing_<system>.png`` into DIR from ``DIR/runs/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechmoe.tables.figures import plot_dev_loss, plot_routing
from speechmoe.tables.paper import DEFAULT_SET_NAMES, PAPER_COLUMNS, SYSTEMS
from speechmoe.tables.report import write_tables
from speechmoe.tables.runs import TablesError, load_runs, missing_runs


def _parse_columns(text: str) -> dict[str, str | None]:
    src = text.strip()
    if not src.startswith("{"):
        src = Path(src).read_text(encoding="utf-8")
    val = json.loads(src)
    if not isinstance(val, dict):
        raise TablesError("--paper-columns: expected a JSON object {test_set: paper_column}")
    bad = [v for v in val.values() if v is not None and v not in PAPER_COLUMNS]
    if bad:
        raise TablesError(f"--paper-columns: unknown paper column(s) {bad}; the paper has "
                          f"{', '.join(PAPER_COLUMNS)}")
    return val


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m speechmoe.tables",
                                description=__doc__.split("\n")[0])
    p.add_argument("--tables-dir", required=True, type=Path,
                   help="directory holding runs/<system>/seed<k>.json; outputs are written here")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--sets", nargs="+", default=None,
                   help="test sets (default: the keys of --paper-columns)")
    p.add_argument("--paper-columns", default=None,
                   help="JSON object (or a file holding one) mapping our test sets to the paper's "
                        f"columns {', '.join(PAPER_COLUMNS)}; default {json.dumps(DEFAULT_SET_NAMES)}")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--routing-system", default="moe_8e")
    p.add_argument("--strict", action="store_true", help="exit 1 if any run is missing")
    return p


def _report_missing(runs: Mapping[str, Mapping[int, dict]], systems: Sequence[str],
                    seeds: Sequence[int]) -> list[tuple[str, int]]:
    """Say on stderr which systems and seeds have no run; returns the missing pairs."""
    missing = missing_runs(runs, systems, seeds)
    for s in systems:
        miss = [k for (x, k) in missing if x == s]
        if s not in runs:
            print(f"MISSING: {s} has no runs (seeds {', '.join(map(str, seeds))}); its rows "
                  "show no numbers of ours", file=sys.stderr)
        elif miss:
            print(f"MISSING: {s} seed {', '.join(map(str, miss))}", file=sys.stderr)
    return missing


def _plot_figures(runs: Mapping[str, Mapping[int, dict]], tables_dir: Path,
                  routing_system: str) -> list[str]:
    """Both figures, each skipped (and said so on stderr) when its runs are missing."""
    figures = []
    fig2 = tables_dir / "fig2_dev_loss.png"
    try:
        figures.append(str(plot_dev_loss(runs, fig2)))
    except TablesError as e:
        print(f"SKIPPED {fig2.name}: {e}", file=sys.stderr)
    rout = tables_dir / f"routing_{routing_system}.png"
    try:
        figures.append(str(plot_routing(runs, rout, routing_system)))
    except TablesError as e:
        print(f"SKIPPED {rout.name}: {e}", file=sys.stderr)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    a = get_parser().parse_args(argv)
    try:
        columns = _parse_columns(a.paper_columns) if a.paper_columns else dict(DEFAULT_SET_NAMES)
        sets = a.sets if a.sets else list(columns)
        set_names = {t: columns.get(t) for t in sets}
        runs = load_runs(a.tables_dir, a.systems, a.seeds)
        missing = _report_missing(runs, a.systems, a.seeds)
        figures = _plot_figures(runs, a.tables_dir, a.routing_system)
        write_tables(a.tables_dir, None, None, a.systems, a.seeds, set_names,
                     n_bootstrap=a.bootstrap, bootstrap_seed=a.bootstrap_seed, runs=runs,
                     figures=figures)
    except TablesError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.tables_dir / 'TABLES.md'}, {a.tables_dir / 'tables.json'}"
          + "".join(f", {f}" for f in figures))
    return 1 if (a.strict and missing) else 0
