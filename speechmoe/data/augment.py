"""Training-time augmentation: speed perturbation, reverberation and noise (waveform, made
into stored copies by the RIR stage), and SpecAugment (features, in the data loader).

    train --augmented_copy--> train_aug: per cut a speed factor (lhotse perturb_speed, e.g.
          0.9 / 1.0 / 1.1), a tempo factor (WSOLA, pitch kept: speechmoe.data.tempo),
          a training RIR with probability rvb_prob, a training noise at a random SNR
          with probability noise_prob; features stored like any set
    batch --SpecAugment--> frequency bands and time spans set to the global mean

Why stored copies and not on-the-fly transforms: on a 2-core machine the data loader's
worker shares the cores with training, so computing the same augmented audio during
training costs the training step (measured in egs/synth_mandarin/RESULTS.md), while
the feature stage computes the copies once, with both cores, before training starts.
SpecAugment is cheap (masking a tensor) and is drawn afresh for every batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from speechmoe.data.rir import mix_noise
from speechmoe.data.tempo import write_tempo_copy


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masks on (T, D) features after deltas and CMVN, before stacking.

    A frequency mask covers the same Mel bands in the static features and in each delta
    order (dims f..f+w of every block of `stored_dim`), so no delta carries the masked
    band; the pitch dims (after the Mel bands) are never frequency-masked. A time mask
    covers every dim of a span of frames. Masked values are 0, the global mean after
    CMVN. Time masks: up to `time_masks` spans of at most `time_width` frames each, in
    all at most `max_time_fraction` of the utterance (lhotse's and icefall's
    convention, sized down for 40 bands and short utterances).
    """

    freq_masks: int = 2
    freq_width: int = 8  # of the 40 Mel bands
    time_masks: int = 4
    time_width: int = 20  # frames of 10 ms
    max_time_fraction: float = 0.1

    def __call__(self, feats: torch.Tensor, num_mel_bins: int, stored_dim: int,
                 rng: Optional[random.Random] = None) -> torch.Tensor:
        rng = rng or random
        T, D = feats.shape
        if D % stored_dim:
            raise ValueError(f"features of {D} dims are not delta blocks of {stored_dim}")
        feats = feats.clone()
        blocks = D // stored_dim
        for _ in range(self.freq_masks):
            w = rng.randint(0, min(self.freq_width, num_mel_bins))
            if w == 0:
                continue
            f0 = rng.randint(0, num_mel_bins - w)
            for b in range(blocks):
                feats[:, b * stored_dim + f0: b * stored_dim + f0 + w] = 0.0
        budget = int(self.max_time_fraction * T)
        for _ in range(self.time_masks):
            w = rng.randint(0, min(self.time_width, budget))
            if w == 0:
                continue
            t0 = rng.randint(0, T - w)
            feats[t0: t0 + w] = 0.0
            budget -= w
        return feats


def parse_factors(text: str) -> list[float]:
    """ "0.9,1.0,1.1" -> [0.9, 1.0, 1.1]; every factor positive."""
    factors = [float(x) for x in text.split(",") if x.strip()] if text else []
    bad = [f for f in factors if not f > 0]
    if bad:
        raise ValueError(f"speed factors must be positive, got {bad}")
    return factors


def augmented_copy(cuts, speeds: Sequence[float] = (1.0,), rirs: Sequence = (),
                   rvb_prob: float = 0.0, noises: Sequence = (), noise_prob: float = 0.0,
                   snr_range: tuple[float, float] = (0.0, 20.0), seed: int = 0,
                   suffix: str = "aug", tempos: Sequence[float] = (1.0,),
                   audio_dir=None):
    """One augmented copy of every cut (ids <id>_<suffix>), drawn per cut:

    - a speed factor from `speeds` (lhotse's perturb_speed: resampling, so duration and
      pitch change together; the transcript is kept);
    - a tempo factor from `tempos` (speechmoe.data.tempo: WSOLA, duration changes and
      pitch is kept; the stretched audio is stored as FLAC under `audio_dir`);
    - with probability `rvb_prob` a random RIR recording of `rirs` (lhotse reverb_rir);
    - with probability `noise_prob` a random stretch of a random recording of `noises`
      at an SNR drawn uniformly from `snr_range` dB (lhotse Cut.mix, which scales the
      noise so that the mix has that SNR over the cut).
    Returns (CutSet, per-cut descriptions).
    """
    from lhotse import CutSet

    if not 0 <= rvb_prob <= 1 or not 0 <= noise_prob <= 1:
        raise ValueError(f"probabilities must be in [0, 1]: rvb {rvb_prob}, noise {noise_prob}")
    if rvb_prob > 0 and not rirs:
        raise ValueError("rvb_prob > 0 needs RIR recordings")
    if noise_prob > 0 and not noises:
        raise ValueError("noise_prob > 0 needs noise recordings")
    from pathlib import Path

    from tqdm import tqdm

    speeds, tempos = list(speeds) or [1.0], list(tempos) or [1.0]
    stretch = any(t != 1.0 for t in tempos)
    if stretch:
        if audio_dir is None:
            raise ValueError("tempo factors other than 1.0 need an audio_dir for the "
                             "stretched audio")
        Path(audio_dir).mkdir(parents=True, exist_ok=True)
    rirs, noises = list(rirs), list(noises)
    rng = random.Random(seed)
    out, info = [], []
    for cut in tqdm(cuts, desc="augmented copy", disable=not stretch, mininterval=10):
        factor = rng.choice(speeds)
        tempo = rng.choice(tempos) if len(tempos) > 1 else tempos[0]
        desc = {"id": None, "source": cut.id, "speed": factor}
        new = cut.perturb_speed(factor) if factor != 1.0 else cut
        if tempo != 1.0:
            tp_id = f"{cut.id}_{suffix}_tp{tempo}"
            new = write_tempo_copy(new, tempo, Path(audio_dir) / f"{tp_id}.flac", tp_id)
            desc["tempo"] = tempo
        if rng.random() < rvb_prob:
            rir = rng.choice(rirs)
            new = new.reverb_rir(rir_recording=rir)
            desc["rir"] = rir.id
        if rng.random() < noise_prob:
            usable = [n for n in noises if n.duration >= new.duration]
            if not usable:
                raise ValueError(f"no noise recording is as long as cut {cut.id} "
                                 f"({new.duration:.2f} s); the longest is "
                                 f"{max(n.duration for n in noises):.2f} s")
            noise = rng.choice(usable)
            offset = rng.uniform(0, noise.duration - new.duration)
            snr = rng.uniform(*snr_range)
            new = mix_noise(new, noise, offset, snr, f"{noise.id}-{cut.id}")
            desc.update(noise=noise.id, snr=round(snr, 2))
        new = new.with_id(f"{cut.id}_{suffix}")
        desc["id"] = new.id
        out.append(new)
        info.append(desc)
    return CutSet.from_cuts(out), info
