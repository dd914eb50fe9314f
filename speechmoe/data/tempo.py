"""Tempo perturbation: speech made faster or slower with its pitch and formants kept.

Speed perturbation (lhotse's perturb_speed) resamples, so a factor of 1.3 also raises the
pitch and every formant by 30%. Real fast speech keeps them; tempo perturbation does too.
lhotse's perturb_tempo calls sox through torchaudio, which torch 2.13 no longer ships, so
the time stretch here is WSOLA (waveform-similarity overlap-add; Verhelst & Roelands,
ICASSP 1993) in numpy:

    output frame k (Hann window of `frame` samples, hop frame/2) is copied from the input
    near k * hop * factor, at the shift within +-`tolerance` samples whose segment best
    continues the previous copied one (largest cross-correlation with the input that
    followed it), so the periods of voiced speech line up across the overlap.

The tolerance (10 ms) covers one pitch period of voices down to 100 Hz.
"""

from __future__ import annotations

import numpy as np


def tempo_num_samples(num_samples: int, factor: float) -> int:
    """The length of `num_samples` made `factor` times faster (lhotse's rounding)."""
    from lhotse.utils import perturb_num_samples

    return perturb_num_samples(num_samples, factor)


def wsola(samples: np.ndarray, factor: float, sample_rate: int = 16000,
          frame_ms: float = 25.0, tolerance_ms: float = 10.0) -> np.ndarray:
    """`samples` (1-D) played `factor` times faster (factor > 1: shorter), pitch kept.

    Returns float32 of tempo_num_samples(len(samples), factor) samples."""
    if not factor > 0:
        raise ValueError(f"tempo factor must be positive, got {factor}")
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"wsola takes one channel, got shape {x.shape}")
    out_len = tempo_num_samples(len(x), factor)
    if factor == 1.0 or len(x) == 0:
        return x.astype(np.float32)
    frame = 2 * max(1, int(round(frame_ms * sample_rate / 2000)))
    hop = frame // 2
    tol = int(round(tolerance_ms * sample_rate / 1000))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)  # periodic Hann
    n_frames = out_len // hop + 2
    last_nominal = int(round((n_frames - 1) * hop * factor))
    pad_end = max(0, last_nominal + tol + 2 * frame - len(x))
    xp = np.concatenate([np.zeros(tol), x, np.zeros(pad_end)])  # input at offset tol
    y = np.zeros(n_frames * hop + frame)
    wsum = np.zeros_like(y)
    prev = None
    for k in range(n_frames):
        nominal = int(round(k * hop * factor)) + tol  # in xp coordinates
        if prev is None:
            pos = nominal
        else:
            template = xp[prev + hop: prev + hop + frame]  # what followed the last copy
            region = xp[nominal - tol: nominal + tol + frame]
            corr = np.correlate(region, template, mode="valid")  # 2 tol + 1 shifts
            pos = nominal - tol + int(np.argmax(corr))
        y[k * hop: k * hop + frame] += window * xp[pos: pos + frame]
        wsum[k * hop: k * hop + frame] += window
        prev = pos
    y = y[:out_len] / np.maximum(wsum[:out_len], 1e-3)
    return y.astype(np.float32)


def write_tempo_copy(cut, factor: float, path, cut_id: str):
    """A new MonoCut of `cut`'s audio (every lazy transform applied) played `factor`
    times faster, stored as FLAC at `path`; its supervisions keep their text, their
    times scaled by 1 / factor."""
    import soundfile as sf
    from lhotse import MonoCut, Recording
    from lhotse.utils import fastcopy

    audio = cut.load_audio()
    if audio.shape[0] != 1:
        raise ValueError(f"cut {cut.id}: tempo perturbation takes mono audio, got "
                         f"{audio.shape[0]} channels")
    stretched = wsola(audio[0], factor, cut.sampling_rate)
    peak = float(np.max(np.abs(stretched))) if len(stretched) else 0.0
    if peak > 1.0:  # FLAC stores [-1, 1]; overlap-add can overshoot a loud input a little
        stretched = stretched / peak
    sf.write(str(path), stretched, cut.sampling_rate, format="FLAC", subtype="PCM_16")
    rec = Recording.from_file(str(path), recording_id=cut_id)
    sups = [fastcopy(s, id=f"{s.id}_tp{factor}" if len(cut.supervisions) > 1 else cut_id,
                     recording_id=cut_id, start=max(0.0, (s.start) / factor),
                     duration=min(s.duration / factor, rec.duration))
            for s in cut.supervisions]
    return MonoCut(id=cut_id, start=0.0, duration=rec.duration, channel=0, recording=rec,
                   supervisions=sups)
