#!/usr/bin/env python3
"""Feature stage: log-Mel fbank (+ pitch) for every cut set, and global CMVN statistics.

    local/compute_fbank.py --manifest-dir data/manifests --out-dir data/fbank \
        --sets train train_aug dev test_read --cmvn-sets train train_aug [--pitch true] \
        [--num-mel-bins 40 --low-freq 20 --high-freq 0]

Reads <manifest-dir>/cuts_<set>.jsonl.gz (reverberation and noise are rendered
from their lhotse transforms here), writes <out-dir>/cuts_<set>.jsonl.gz with
features attached and <out-dir>/cmvn.pt (statistics of fbank + deltas + double
deltas over --cmvn-sets). Audio that cannot be used (corrupt, empty, wrong
sample rate) is reported by file and reason in <out-dir>/bad_audio_<set>.txt
and left out; the stage goes on. The feature options go to <out-dir>/features.json,
which training, decoding and export read; asking for other options (e.g. --pitch)
than the ones stored recomputes every set.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

from speechmoe.data.fbank import compute_fbank
from speechmoe.data.manifests import Excluded, report_excluded, write_lhotse
from speechmoe.features import FEATURES_JSON, FeatureConfig, GlobalCMVN, add_deltas
from speechmoe.logs import cli_main, script_parser, setup_logger
from speechmoe.utils import str2bool


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, show_defaults=True)
    p.add_argument("--manifest-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--cmvn-sets", nargs="+", required=True,
                   help="sets whose statistics make the global CMVN (training data)")
    p.add_argument("--cmvn-max-cuts", type=int, default=4000,
                   help="random cuts used for CMVN statistics")
    p.add_argument("--num-jobs", type=int, default=2)
    p.add_argument("--pitch", type=str2bool, default=False,
                   help="append 2 pitch features (voicing, log F0) to the fbank dims")
    p.add_argument("--num-mel-bins", type=int, default=FeatureConfig.num_mel_bins,
                   help="Mel bands")
    p.add_argument("--low-freq", type=float, default=FeatureConfig.low_freq,
                   help="lowest Mel band edge (Hz)")
    p.add_argument("--high-freq", type=float, default=FeatureConfig.high_freq,
                   help="highest Mel band edge (Hz); <= 0: an offset from Nyquist")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from lhotse import CutSet

    out = args.out_dir
    log = setup_logger(out / "log" / "fbank.log")
    cfg = FeatureConfig(pitch=args.pitch, num_mel_bins=args.num_mel_bins,
                        low_freq=args.low_freq, high_freq=args.high_freq).check()
    stored = out / FEATURES_JSON
    if stored.is_file() and FeatureConfig.load(stored) != cfg:
        log.info("%s: the stored features were made with other options (%s); recomputing "
                 "every set with %s", stored, FeatureConfig.load(stored).to_dict(),
                 cfg.to_dict())
        for marker in out.glob(".*.done"):
            marker.unlink()
        (out / "cmvn.pt").unlink(missing_ok=True)
    elif not stored.is_file() and any(out.glob(".*.done")):
        # features of a version that wrote no features.json: plain fbank
        if FeatureConfig() != cfg:
            log.info("%s: stored features are plain fbank; recomputing with %s", out,
                     cfg.to_dict())
            for marker in out.glob(".*.done"):
                marker.unlink()
            (out / "cmvn.pt").unlink(missing_ok=True)
    cfg.save(stored)
    complete = [name for name in args.sets if (out / f".{name}.done").is_file()
                and (out / f"cuts_{name}.jsonl.gz").is_file()]
    cmvn_path = out / "cmvn.pt"
    if complete:
        every = len(complete) == len(args.sets) and cmvn_path.is_file()
        log.info("features exist, skipping %s%s: each set's done marker %s/.<set>.done and "
                 "its cuts_<set>.jsonl.gz are there, made with the options of %s (delete a "
                 "marker%s to redo it)", " ".join(complete),
                 f" and the CMVN statistics {cmvn_path.name}" if every else "", out, stored,
                 f", or {cmvn_path.name}," if every else "")
    for name in args.sets:
        target = out / f"cuts_{name}.jsonl.gz"
        if name in complete:
            continue
        src = args.manifest_dir / f"cuts_{name}.jsonl.gz"
        if not src.is_file():
            log.error("%s: not found (run the data preparation / RIR stages first)", src)
            return 1
        source = CutSet.from_file(src)
        cuts, bad = compute_fbank(source, out, name, args.num_jobs, cfg)
        report_excluded(log, name, [Excluded(*b) for b in bad], len(source),
                        out / f"bad_audio_{name}.txt")
        write_lhotse(cuts, target)
        hours = sum(c.duration for c in cuts) / 3600
        log.info("%s: %d cuts, %.2f h of features; %d bad audio files left out", name,
                 len(cuts), hours, len(bad))
        (out / f".{name}.done").touch()

    if cmvn_path.is_file():
        if len(complete) < len(args.sets):
            log.info("CMVN statistics exist (%s), skipping; delete the file to redo them",
                     cmvn_path)
    else:
        pool = []
        for name in args.cmvn_sets:
            pool.extend(CutSet.from_file(out / f"cuts_{name}.jsonl.gz"))
        random.Random(0).shuffle(pool)
        cmvn = GlobalCMVN(cfg.base_dim)
        for cut in pool[: args.cmvn_max_cuts]:
            cmvn.accumulate(add_deltas(torch.from_numpy(cut.load_features()),
                                       cfg.delta_order, cfg.delta_window))
        if cmvn.count == 0:
            log.error("no features in %s for CMVN statistics", args.cmvn_sets)
            return 1
        cmvn.save(cmvn_path)
        log.info("CMVN statistics from %d frames of %d cuts -> %s", cmvn.count,
                 min(len(pool), args.cmvn_max_cuts), cmvn_path)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
