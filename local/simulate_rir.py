#!/usr/bin/env python3
"""RIR and noise stage: a bank of room impulse responses and noise, the training data's
augmented copy, and reverberant / noisy test sets.

  # 200 RIRs (20 held out for test sets) and the held-out noise (white, pink, brown)
  simulate_rir.py bank --out-dir data/rir --num-rirs 200 --heldout 20

  # training noise: babble (from the training speech), music, hum, blue, band-pass noise;
  # or the recordings under MUSAN-style directories (--noise-dir musan/noise musan/music)
  simulate_rir.py train-noise --out-dir data/rir --speech data/manifests/cuts_train.jsonl.gz

  # the augmented copy (ids <id>_aug): per cut a speed factor, a training RIR with
  # probability 0.5, a training noise at 0-20 dB SNR with probability 0.5
  simulate_rir.py augment --cuts-in data/manifests/cuts_train.jsonl.gz \
      --cuts-out data/manifests/cuts_train_aug.jsonl.gz --speeds 0.9,1.0,1.1 \
      --rirs data/rir/rirs_train.jsonl.gz --rvb-prob 0.5 \
      --noise data/rir/noise_train.jsonl.gz --noise-prob 0.5 --snr 0,20

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

from speechmoe.data.augment import augmented_copy, parse_factors
from speechmoe.data.rir import HELDOUT_NOISE_KINDS, RoomConfig, add_noise, noise_bank, \
    noise_dir_recordings, reverberate, rir_bank, split_heldout, training_noise_bank
from speechmoe.data.manifests import write_lhotse
from speechmoe.logs import cli_main, script_parser, setup_logger


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
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
    n = sub.add_parser("train-noise", help="noise recordings for training (not the held-out kinds)")
    n.add_argument("--out-dir", type=Path, required=True)
    n.add_argument("--speech", type=Path, help="training cuts, the talkers of babble noise")
    n.add_argument("--noise-dir", type=Path, nargs="*", default=[],
                   help="directories of noise recordings (e.g. MUSAN's noise/ and music/) "
                        "used instead of the synthetic kinds")
    n.add_argument("--per-kind", type=int, default=3)
    n.add_argument("--seconds", type=float, default=30.0)
    n.add_argument("--seed", type=int, default=0)
    g = sub.add_parser("augment", help="the augmented copy of a training cut set")
    g.add_argument("--cuts-in", type=Path, required=True)
    g.add_argument("--cuts-out", type=Path, required=True)
    g.add_argument("--speeds", default="0.9,1.0,1.1", help="speed factors, one drawn per cut")
    g.add_argument("--tempos", default="1.0",
                   help="tempo factors (pitch kept: WSOLA), one drawn per cut after its speed")
    g.add_argument("--audio-dir", type=Path,
                   help="where the tempo-stretched audio is stored (FLAC; emptied first); "
                        "needed when a tempo factor is not 1.0")
    g.add_argument("--rirs", type=Path, help="training RIRs (RecordingSet)")
    g.add_argument("--rvb-prob", type=float, default=0.5)
    g.add_argument("--noise", type=Path, help="training noise (RecordingSet)")
    g.add_argument("--noise-prob", type=float, default=0.5)
    g.add_argument("--snr", default="0,20", help="min,max SNR in dB")
    g.add_argument("--copies", type=int, default=1,
                   help="independent copies (ids _aug, _aug2, ...), concatenated")
    g.add_argument("--seed", type=int, default=0)
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

    if args.cmd == "train-noise":
        log = setup_logger(args.out_dir / "log" / "rir.log")
        if args.noise_dir:
            recs = noise_dir_recordings(args.noise_dir)
            source = "the recordings under " + " ".join(map(str, args.noise_dir))
        else:
            if args.speech is not None and not args.speech.is_file():
                log.error("%s: not found (run the data preparation stage first)", args.speech)
                return 1
            speech = CutSet.from_file(args.speech) if args.speech else None
            recs = training_noise_bank(args.out_dir, args.per_kind, args.seconds, args.seed,
                                       speech)
            source = "synthetic kinds " + ", ".join(sorted({r.id.split("-")[1] for r in recs}))
        held = [r.id for r in recs if r.id.split("-")[1] in HELDOUT_NOISE_KINDS]
        if held and not args.noise_dir:
            raise RuntimeError(f"held-out noise kinds in the training noise: {held[:3]}")
        RecordingSet.from_recordings(recs).to_file(args.out_dir / "noise_train.jsonl.gz")
        log.info("training noise: %d recordings, %.0f s, %s -> %s", len(recs),
                 sum(r.duration for r in recs), source, args.out_dir / "noise_train.jsonl.gz")
        return 0

    if args.cmd == "augment":
        log = setup_logger(args.cuts_out.parent / "log" / "rir.log")
        paths = [args.cuts_in] + ([args.rirs] if args.rvb_prob > 0 else []) + \
            ([args.noise] if args.noise_prob > 0 else [])
        for path in paths:
            if path is None or not path.is_file():
                log.error("%s: not found (run the data preparation / RIR bank / training "
                          "noise steps first; --rirs and --noise are needed when their "
                          "probability is above 0)", path)
                return 1
        cuts = CutSet.from_file(args.cuts_in).to_eager()
        rirs = RecordingSet.from_file(args.rirs) if args.rvb_prob > 0 else []
        noises = RecordingSet.from_file(args.noise) if args.noise_prob > 0 else []
        tempos = parse_factors(args.tempos)
        if any(t != 1.0 for t in tempos):
            if args.audio_dir is None:
                log.error("--tempos %s needs --audio-dir for the stretched audio", args.tempos)
                return 1
            for old in args.audio_dir.glob("*_tp*.flac"):  # the last copy's
                old.unlink()
        parts, infos = [], []
        for k in range(args.copies):
            out, info = augmented_copy(cuts, parse_factors(args.speeds), rirs, args.rvb_prob,
                                       noises, args.noise_prob, pair(args.snr),
                                       seed=args.seed + k, suffix="aug" if k == 0 else
                                       f"aug{k + 1}", tempos=tempos,
                                       audio_dir=args.audio_dir)
            parts.extend(out)
            infos.extend(info)
        write_lhotse(CutSet.from_cuts(parts), args.cuts_out)
        n = len(infos)
        log.info("%s: %d augmented cuts (%d copies), %.2f h: speeds %s, tempos %s, "
                 "reverberated %d, with noise %d (SNR %s dB) -> %s", args.cuts_in, n,
                 args.copies, sum(c.duration for c in parts) / 3600,
                 {f: sum(1 for i in infos if i["speed"] == f)
                  for f in parse_factors(args.speeds)},
                 {t: sum(1 for i in infos if i.get("tempo", 1.0) == t) for t in tempos},
                 sum(1 for i in infos if "rir" in i), sum(1 for i in infos if "noise" in i),
                 args.snr, args.cuts_out)
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
    write_lhotse(out, args.cuts_out)
    log.info("%s: %d of %d cuts reverberated%s -> %s", args.cuts_in, len(out), len(cuts),
             " and mixed with noise" if args.noise else "", args.cuts_out)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
