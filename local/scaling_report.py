#!/usr/bin/env python3
"""The data-scaling study's report: <results-dir>/SCALING.md, scaling.json and scaling.png
from the runs of <results-dir>/<size>/runs/ (egs/synth_mandarin/run_scaling.sh writes them).

    python local/scaling_report.py --results-dir results/scaling --sizes 3.5h 17.5h 70h \\
        --systems b1 moe_8e dense_8l --seeds 1 2 3

Each system is compared with --reference at each size and on each test set (pooled WFST
rates, paired bootstrap over utterances, seed means and stds); the verdict follows the rule
in speechmoe.tables.scaling. Sizes or runs not finished yet are listed, not guessed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from speechmoe.logs import cli_main, script_parser


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, epilog=False)
    p.add_argument("--results-dir", type=Path, required=True)
    p.add_argument("--sizes", nargs="+", required=True, help="subdirectories, smallest first")
    p.add_argument("--systems", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--test-sets", nargs="+", default=["test_read", "test_chat", "test_spon"])
    p.add_argument("--reference", default="b1")
    p.add_argument("--figure-system", default="moe_8e",
                   help="whose relative change the figure plots")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--optional-systems", nargs="*", default=[],
                   help="systems run at some sizes only (not missing elsewhere), e.g. "
                        "moe_8e_up, or not run at one size: dense_8l@17.5h")
    p.add_argument("--dev-pairs", nargs="*", default=[], metavar="A:B",
                   help="also compare A with B on dev, e.g. moe_8e_up:moe_8e_freeze")
    p.add_argument("--pairs", nargs="*", default=[], metavar="A:B",
                   help="also compare A with B on the test sets, e.g. moe_8e:dense_8l")
    p.add_argument("--title", default=None, help="the report's heading")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    from speechmoe.tables.scaling import scaling_report, write_scaling

    if args.reference not in args.systems:
        raise ValueError(f"--reference {args.reference} is not one of --systems")
    pairs = {}
    for name in ("dev_pairs", "pairs"):
        pairs[name] = [tuple(p.split(":", 1)) for p in getattr(args, name)]
        if any(len(p) != 2 for p in pairs[name]):
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: each must be A:B")
    report = scaling_report(args.results_dir, args.sizes, args.systems, args.seeds,
                            args.test_sets, args.reference, n_boot=args.bootstrap,
                            optional=args.optional_systems, dev_pairs=pairs["dev_pairs"],
                            pairs=pairs["pairs"])
    if args.title:
        report["title"] = args.title
    paths = write_scaling(report, args.results_dir, args.figure_system)
    print(paths[0].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
