#!/usr/bin/env python3
"""Error rates per speaker of a scored experiment, and the gap between seen and unseen
speakers with a confidence interval that resamples speakers.

    cd egs/synth_mandarin && python results/voices/per_speaker.py --exp exp/moe_4e \
        --data data --out results/voices/<name>/per_speaker.json

For each set and method it reads the scoring stage's utt_errors.tsv (errors and reference
tokens per utterance) and the set's speaker column (data/text/<set>.tsv), and reports the
pooled rate, the number of speakers and utterances, every speaker's rate, and the worst
speakers. For dev_unseen against dev it gives the ratio of the pooled WFST CERs with a
95% bootstrap interval over speakers (each set's speakers drawn with replacement, 2,000
times): speakers, not utterances, are the unit that varies between corpora.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from speechmoe.scoring import read_utt_errors

SETS = ("dev", "dev_unseen", "test_read", "test_chat", "test_spon")
METHODS = ("ctc_greedy", "wfst")


def speaker_counts(exp: Path, data: Path, name: str, method: str) -> dict[str, list[int]]:
    """{speaker: [errors, reference tokens, utterances]} of one set and method."""
    tsv = data / "text" / f"{name}.tsv"
    speaker = {}
    for line in tsv.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        speaker[cols[0]] = cols[3] or "default"
    found = sorted((exp / "decode").glob(f"*/{method}/{name}/utt_errors.tsv"))
    if not found:
        raise FileNotFoundError(f"{exp}/decode/*/{method}/{name}/utt_errors.tsv: not found "
                                "(run the scoring stage)")
    counts: dict[str, list[int]] = {}
    for utt, errors, ref in read_utt_errors(found[-1]):
        c = counts.setdefault(speaker[utt], [0, 0, 0])
        c[0] += errors
        c[1] += ref
        c[2] += 1
    if not counts:
        raise ValueError(f"{found[-1]}: no utterances")
    return counts


def pooled(counts) -> float:
    ref = sum(c[1] for c in counts)
    if ref == 0:
        raise ValueError("a rate over 0 reference tokens")
    return 100.0 * sum(c[0] for c in counts) / ref


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--boot", type=int, default=2000)
    args = p.parse_args()

    report = {"command": " ".join(["python", *sys.argv]), "sets": {}}
    per = {}
    for name in SETS:
        for method in METHODS:
            counts = per[name, method] = speaker_counts(args.exp, args.data, name, method)
            rates = {s: round(100.0 * c[0] / c[1], 2) for s, c in counts.items() if c[1]}
            report["sets"].setdefault(name, {})[method] = {
                "metric": "CER" if method == "wfst" else "toned-syllable ER",
                "rate": round(pooled(counts.values()), 2), "speakers": len(counts),
                "utterances": sum(c[2] for c in counts.values()),
                "worst": sorted(rates.items(), key=lambda kv: -kv[1])[:5],
                "per_speaker": rates}
    rng = random.Random(0)
    for method in METHODS:
        seen = list(per["dev", method].values())
        unseen = list(per["dev_unseen", method].values())
        ratios = sorted(pooled(rng.choices(unseen, k=len(unseen)))
                        / pooled(rng.choices(seen, k=len(seen))) for _ in range(args.boot))
        report.setdefault("dev_unseen_over_dev", {})[method] = {
            "ratio": round(pooled(unseen) / pooled(seen), 3),
            "ci95": [round(ratios[int(0.025 * args.boot)], 3),
                     round(ratios[int(0.975 * args.boot) - 1], 3)],
            "bootstrap": f"{args.boot} resamples of each set's speakers"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    for name, methods in report["sets"].items():
        for method, r in methods.items():
            print(f"{name:<11} {method:<10} {r['metric']:<18} {r['rate']:6.2f}  over "
                  f"{r['utterances']} utterances of {r['speakers']} speakers; worst "
                  + ", ".join(f"{s} {v:.1f}" for s, v in r["worst"][:3]))
    for method, r in report["dev_unseen_over_dev"].items():
        print(f"dev_unseen / dev, {method}: {r['ratio']:.3f} (95% CI over speakers "
              f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
