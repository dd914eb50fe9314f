#!/usr/bin/env python3
"""How far apart the corpus's voices are, and whether each says its tones.

    cd egs/synth_mandarin && python results/voices/measure.py --data data \
        --out results/voices/<name>

For every voice of one group it synthesizes the same five dev sentences and the tone
probe (ma1..ma4 said apart), then reports per group (speechmoe.data.voices):

  - the spread of the voices' long-term spectra (mean pairwise RMS band difference in dB,
    the same to the nearest other voice, the per-band std across voices);
  - the tone check: how many voices' four probe syllables come out as tones 1-4;
  - coverage: for dev_unseen's speakers and the test sets' held-out variants, the distance
    to the nearest training voice, against version 1's 14 and against version 2's 400.

Groups: version 1's 14 training voices (espeak-ng's own variants), version 2's drawn
training speakers, the same speakers without their vocal-tract-length warp (what formant
settings alone give), dev_unseen's speakers, and the test sets' 4 held-out variants.
Writes summary.json, per_voice.json.gz and spectra.png (the first two principal axes of
every voice's long-term spectrum).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--num-jobs", type=int, default=2)
    p.add_argument("--from-per-voice", action="store_true",
                   help="the report again from <out>/per_voice.json.gz (no synthesis)")
    args = p.parse_args()

    from speechmoe.data.voices import (LEGACY_HELDOUT_VOICES, LEGACY_TRAIN_VOICES, TONE_PROBE,
                                       load_voices, spread)

    voices = load_voices(args.data / "text" / "voices.json")
    dev = [line.split("\t") for line in (args.data / "text" / "dev.tsv").read_text(
        encoding="utf-8").splitlines()[:5]]
    sentences = [r[2] for r in dev]
    unwarped = {f"{n}_nowarp": dataclasses.replace(v, name=f"{n}_nowarp", warp=1.0)
                for n, v in voices.items() if n.startswith("S")}
    groups = {
        "v1_train_variants": [v or "default" for v in LEGACY_TRAIN_VOICES],
        "v2_train_drawn": sorted(n for n in voices if n.startswith("S")),
        "v2_train_drawn_without_warp": sorted(unwarped),
        "v2_dev_unseen": sorted(n for n in voices if n.startswith("U")),
        "test_heldout_variants": list(LEGACY_HELDOUT_VOICES),
    }
    if args.from_per_voice:
        with gzip.open(args.out / "per_voice.json.gz", "rt") as f:
            per_voice = json.load(f)
    else:
        per_voice = synthesize_and_measure(voices, unwarped, groups, sentences, args.num_jobs)
    summary = {"command": " ".join(["python", *sys.argv]), "sentences": sentences,
               "tone_probe": list(TONE_PROBE), "groups": {}, "nearest_training_voice_db": {}}
    for g, members in groups.items():
        ok = [n for n in members if per_voice[n]["tones_ok"]]
        summary["groups"][g] = {
            **spread([per_voice[n]["ltas"] for n in members]),
            "tone_check_passed": len(ok),
            "tone_check_failed": sorted(set(members) - set(ok))}
    db = 10 / np.log(10)  # natural-log energies to dB

    def spectra(names):
        return np.array([per_voice[n]["ltas"] for n in names]) * db

    training = {"v1 (14 voices)": groups["v1_train_variants"],
                "v2 (400 voices)": groups["v1_train_variants"] + groups["v2_train_drawn"]}
    for g in ("v2_dev_unseen", "test_heldout_variants"):
        for t, names in training.items():
            d = np.sqrt(((spectra(groups[g])[:, None] - spectra(names)[None]) ** 2).mean(-1))
            summary["nearest_training_voice_db"].setdefault(g, {})[t] = {
                "mean": round(float(d.min(axis=1).mean()), 2),
                "per_voice": dict(zip(groups[g], d.min(axis=1).round(2).tolist()))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    with gzip.open(args.out / "per_voice.json.gz", "wt") as f:
        json.dump(per_voice, f)
    plot(groups, per_voice, args.out / "spectra.png")
    for g, near in summary["nearest_training_voice_db"].items():
        print(f"{g}: nearest training voice " + ", ".join(
            f"{t} {v['mean']:.2f} dB" for t, v in near.items()))
    for g, s in summary["groups"].items():
        print(f"{g:30s} voices {s['voices']:4d}  pairwise {s['mean_pairwise_db']:.2f} dB  "
              f"nearest {s['mean_nearest_db']:.2f} dB  band std {s['band_std_db']:.2f} dB  "
              f"tones ok {s['tone_check_passed']}/{s['voices']}")
    return 0


def synthesize_and_measure(voices, unwarped, groups, sentences, num_jobs) -> dict:
    """Every voice's long-term spectrum, tone shapes and tone check."""
    import soundfile as sf

    from speechmoe.data.synth import SynthJob, synthesize
    from speechmoe.data.voices import (TONE_PROBE, classify_tones, espeak_data_dirs,
                                       long_term_spectrum, tone_shapes)

    drawn = {**voices, **unwarped}
    work = Path(tempfile.mkdtemp(prefix="voices-"))
    espeak = espeak_data_dirs(drawn.values(), work / "espeak")

    def job(name: str, key: str, pinyin: str) -> SynthJob:
        wav = work / "wav" / name / f"{key}.wav"
        v = drawn.get(name)
        if v is None:  # one of espeak-ng's variants, at version 1's middle rate
            variant = "" if name == "default" else name
            return SynthJob(f"{name}-{key}", pinyin, variant, 170, 50, wav)
        return SynthJob(f"{name}-{key}", pinyin, name, v.espeak_rate(170), 50, wav,
                        espeak_path=espeak[name], warp=v.warp)

    names = [n for g in groups.values() for n in g]
    jobs = {(n, k): job(n, k, text) for n in names
            for k, text in [*((f"s{i}", s) for i, s in enumerate(sentences)),
                            *((f"t{i}", s) for i, s in enumerate(TONE_PROBE))]}
    failed = synthesize(jobs.values(), num_jobs=num_jobs, desc="synthesize probes")
    if failed:
        raise RuntimeError(f"synthesis failed: {dict(list(failed.items())[:3])}")

    per_voice = {}
    for n in names:
        speech = np.concatenate([sf.read(jobs[n, f"s{i}"].wav)[0]
                                 for i in range(len(sentences))])
        shapes = tone_shapes([sf.read(jobs[n, f"t{i}"].wav)[0] for i in range(4)])
        tones = classify_tones(shapes)
        per_voice[n] = {"ltas": long_term_spectrum(speech).round(4).tolist(),
                        "tone_shapes": [[round(x, 2) for x in s] for s in shapes],
                        "tones": tones, "tones_ok": tones == [1, 2, 3, 4]}

    return per_voice


def plot(groups, per_voice, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([per_voice[n]["ltas"] for g in groups.values() for n in g]) * 10 / np.log(10)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for (g, members), marker in zip(groups.items(), "os.^D"):
        y = (np.array([per_voice[n]["ltas"] for n in members]) * 10 / np.log(10) - mean) @ vt[:2].T
        ax.scatter(y[:, 0], y[:, 1], s=40 if len(members) < 50 else 8, marker=marker, label=g,
                   alpha=0.8)
    ax.set_xlabel("first principal axis of the long-term spectra (dB)")
    ax.set_ylabel("second principal axis (dB)")
    ax.set_title("Voices of the embedded corpus: long-term spectra of 5 dev sentences")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
