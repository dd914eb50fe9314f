#!/usr/bin/env python3
"""RIR simulation stage: a bank of room impulse responses, and reverberant / noisy cut sets.

  # 200 RIRs (20 held out for test sets) and a bank of colored noise
  simulate_rir.py bank --out-dir data/rir --num-rirs 200 --heldout 20

  # a reverberant copy of the training cuts (ids get the suffix _rvb)
  simulate_rir.py apply --rirs data/rir/rirs_train.jsonl.gz \
      --cuts-in data/manifests/cuts_train.jsonl.gz --cuts-out data/manifests/cuts_train_rvb.jsonl.gz

  # a reverberant + noisy version of a test set, with held-out RIRs, same ids
  simulate_rir.py apply --rirs data/rir/rirs_heldout.jsonl.gz --noise data/rir/noise.jsonl.gz \
      --snr 5,20 --keep-ids --cuts-in ..._dry.jsonl.gz --cuts-out ....jsonl.gz

The audio is not written: lhotse keeps the reverb and the mix as transforms of
each cut, and the feature stage renders them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechmoe.data.rir import RoomConfig, add_noise, noise_bank, reverberate, rir_bank, \
    split_heldout
from speechmoe.logs import cli_main, setup_logger


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bank", help="simulate RIRs and noise")
    b.add_argument("--out-dir", type=Path, required=True)
    b.add_argument("--num-rirs", type=int, default=200)
    b.add_argument("--heldout", type=int, default=20, help="RIRs kept out of training")
    b.add_argument("--rt60", default="0.2,0.8", help="min,max RT60 in seconds")
    b.add_argument("--noise-per-kind", type=int, default=3)
    b.add_argument("--noise-seconds", type=float, default=30.0)
    b.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("apply", help="make a reverberant (and noisy) copy of a cut set")
    a.add_argument("--rirs", type=Path, required=True)
    a.add_argument("--cuts-in", type=Path, required=True)
    a.add_argument("--cuts-out", type=Path, required=True)
    a.add_argument("--fraction", type=float, default=1.0, help="share of cuts to copy")
    a.add_argument("--noise", type=Path, help="noise RecordingSet to mix in")
    a.add_argument("--snr", default="5,20", help="min,max SNR in dB for --noise")
    a.add_argument("--keep-ids", action="store_true", help="do not add the _rvb suffix")
    a.add_argument("--seed", type=int, default=0)
    return p


def pair(text: str) -> tuple[float, float]:
    lo, hi = (float(x) for x in text.split(","))
    return lo, hi


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from lhotse import CutSet, RecordingSet

    if args.cmd == "bank":
        log = setup_logger(args.out_dir / "log" / "rir.log")
        recs, infos = rir_bank(args.out_dir, args.num_rirs, args.seed,
                               RoomConfig(rt60=pair(args.rt60)), log=log)
        train, held = split_heldout(recs, args.heldout, args.seed)
        RecordingSet.from_recordings(train).to_file(args.out_dir / "rirs_train.jsonl.gz")
        RecordingSet.from_recordings(held).to_file(args.out_dir / "rirs_heldout.jsonl.gz")
        (args.out_dir / "rirs.json").write_text(json.dumps(infos, indent=1))
        noises = noise_bank(args.out_dir, args.noise_per_kind, args.noise_seconds, args.seed)
        RecordingSet.from_recordings(noises).to_file(args.out_dir / "noise.jsonl.gz")
        log.info("wrote %d training RIRs, %d held-out RIRs, %d noise recordings to %s",
                 len(train), len(held), len(noises), args.out_dir)
        return 0

    log = setup_logger(args.cuts_out.parent / "log" / "rir.log")
    for path in (args.rirs, args.cuts_in) + ((args.noise,) if args.noise else ()):
        if not path.is_file():
            log.error("%s: not found (run the RIR bank / data preparation stage first)", path)
            return 1
    cuts = CutSet.from_file(args.cuts_in)
    out = reverberate(cuts, RecordingSet.from_file(args.rirs), seed=args.seed,
                      fraction=args.fraction, affix=not args.keep_ids)
    if args.noise:
        out = add_noise(out, RecordingSet.from_file(args.noise), pair(args.snr), seed=args.seed)
    tmp = args.cuts_out.with_name(args.cuts_out.name + ".tmp.jsonl.gz")
    out.to_file(tmp)
    tmp.replace(args.cuts_out)
    log.info("%s: %d of %d cuts reverberated%s -> %s", args.cuts_in, len(out), len(cuts),
             " and mixed with noise" if args.noise else "", args.cuts_out)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
