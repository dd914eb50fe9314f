"""Acoustic features (paper section 4.1).

    waveform --fbank--> (T, 40) log-Mel, 25 ms window, 10 ms shift
             [--pitch--> (T, 2) voicing and speaker-normalised log F0, appended: (T, 42)]
             --add_deltas--> (T, 120) with first and second derivatives [(T, 126)]
             --GlobalCMVN--> global mean / variance normalisation
             --stack_and_subsample--> (ceil(T/3), 960): 8 stacked frames, every 3rd kept
                                      [(ceil(T/3), 1008)]

The paper's input is fbank alone (pitch=False, the library default). Pitch
(pitch=True) is the Kaldi Mandarin recipes' "+pitch": tones are pitch contours,
and 40 Mel bands resolve F0 poorly (the embedded corpus's tones differ by ~10% of
an F0 near 100 Hz, a fraction of one band). A recipe's choice is written by the
feature stage to <fbank dir>/features.json, beside cmvn.pt, and read from there
by training, decoding and export (`FeatureConfig.for_cmvn`).

Every fbank goes through `fbank()`: kaldifeat when it is installed, otherwise
lhotse's pure-torch Kaldi Fbank with the same options (they agree to ~1e-3;
lhotse's own default high_freq=-400 would differ by up to ~6.6, so it is set
to 0 = Nyquist as in Kaldi and kaldifeat).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np
import torch

from speechmoe.utils import atomic_torch_save, atomic_write_text, safe_torch_load

Audio = Union[np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: offset from Nyquist (Kaldi convention)
    # Frames centred on the shift grid, num_frames = round(duration / shift)
    # (lhotse's convention); Kaldi's snip_edges=True drops the partial frames.
    snip_edges: bool = False
    delta_order: int = 2
    delta_window: int = 2
    stack: int = 8
    subsample: int = 3
    pitch: bool = False  # append PITCH_DIMS pitch features to the fbank (Kaldi's "+pitch")

    @property
    def stored_dim(self) -> int:
        """Dims of the stored features (fbank [+ pitch]), before deltas."""
        return self.num_mel_bins + (PITCH_DIMS if self.pitch else 0)

    @property
    def base_dim(self) -> int:
        return self.stored_dim * (self.delta_order + 1)

    @property
    def model_dim(self) -> int:
        return self.base_dim * self.stack

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> "FeatureConfig":
        """self, or ValueError naming the option: a Mel band range inside (0, Nyquist], and
        no band so narrow that it holds no FFT bin (Kaldi's and kaldifeat's fbank stop on
        one: too many bands for a low low_freq)."""
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if self.num_mel_bins < 1:
            raise ValueError(f"num_mel_bins {self.num_mel_bins}: must be at least 1")
        if not 0 <= self.low_freq < high <= nyquist:
            raise ValueError(f"Mel bands from low_freq {self.low_freq} to high_freq "
                             f"{self.high_freq} ({high:g} Hz): need 0 <= low < high <= "
                             f"Nyquist ({nyquist:g} Hz)")
        window = round(self.sample_rate * self.frame_length_ms / 1000)
        fft = 1 << (window - 1).bit_length()
        fft_mel = np.log1p(np.arange(fft // 2) * (self.sample_rate / fft) / 700.0) * 1127.0
        edges = np.linspace(*(np.log1p(np.array([self.low_freq, high]) / 700.0) * 1127.0),
                            self.num_mel_bins + 2)
        for band in range(self.num_mel_bins):
            if not np.any((fft_mel > edges[band]) & (fft_mel < edges[band + 2])):
                raise ValueError(
                    f"num_mel_bins {self.num_mel_bins} from low_freq {self.low_freq} Hz: "
                    f"Mel band {band} holds no FFT bin of a {fft}-point FFT (too many bands "
                    "for this range: fewer bands or a higher low_freq)")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown feature options {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        import json

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "FeatureConfig":
        import json

        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a feature configuration ({exc})") from exc

    @classmethod
    def for_cmvn(cls, cmvn_path: str | Path) -> "FeatureConfig":
        """The features behind a CMVN file: <its dir>/features.json, written by the
        feature stage (a dir without one holds plain fbank: the defaults)."""
        path = Path(cmvn_path).parent / FEATURES_JSON
        return cls.load(path) if path.is_file() else cls()


FEATURES_JSON = "features.json"
PITCH_DIMS = 2


def have_kaldifeat() -> bool:
    try:
        import kaldifeat  # noqa: F401
    except Exception:  # ImportError, or a build for another torch
        return False
    return True


@lru_cache(maxsize=8)
def _kaldifeat_fbank(cfg: FeatureConfig):
    import kaldifeat

    opts = kaldifeat.FbankOptions()
    opts.frame_opts.samp_freq = cfg.sample_rate
    opts.frame_opts.frame_length_ms = cfg.frame_length_ms
    opts.frame_opts.frame_shift_ms = cfg.frame_shift_ms
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = cfg.snip_edges
    opts.mel_opts.num_bins = cfg.num_mel_bins
    opts.mel_opts.low_freq = cfg.low_freq
    opts.mel_opts.high_freq = cfg.high_freq
    return kaldifeat.Fbank(opts)


@lru_cache(maxsize=8)
def _lhotse_fbank(cfg: FeatureConfig):
    import warnings

    from lhotse.features.kaldi.extractors import Fbank, FbankConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lhotse warns about snip_edges=True
        return Fbank(FbankConfig(
            sampling_rate=cfg.sample_rate, frame_length=cfg.frame_length_ms / 1000,
            frame_shift=cfg.frame_shift_ms / 1000, dither=0.0, snip_edges=cfg.snip_edges,
            num_filters=cfg.num_mel_bins, low_freq=cfg.low_freq, high_freq=cfg.high_freq))


def fbank(samples: Audio, sample_rate: int, cfg: FeatureConfig = FeatureConfig(),
          backend: str = "auto") -> torch.Tensor:
    """Log-Mel filterbank of one mono waveform with samples in [-1, 1].

    Returns (num_frames, num_mel_bins) float32. backend: "auto" (kaldifeat if
    installed), "kaldifeat" or "lhotse".
    """
    if sample_rate != cfg.sample_rate:
        raise ValueError(f"audio is sampled at {sample_rate} Hz, the features expect "
                         f"{cfg.sample_rate} Hz: resample it first")
    wave = torch.as_tensor(samples, dtype=torch.float32)
    if wave.ndim == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform, got shape {tuple(wave.shape)}")
    min_samples = int(cfg.sample_rate * cfg.frame_length_ms / 1000)
    if wave.numel() < (min_samples if cfg.snip_edges else 1):
        raise ValueError(f"waveform of {wave.numel()} samples is too short for one frame")
    if backend == "auto":
        backend = "kaldifeat" if have_kaldifeat() else "lhotse"
    if backend == "kaldifeat":
        return _kaldifeat_fbank(cfg)(wave).float()
    if backend == "lhotse":
        feats = _lhotse_fbank(cfg).extract(wave.numpy(), sampling_rate=sample_rate)
        return torch.as_tensor(np.asarray(feats), dtype=torch.float32)
    raise ValueError(f"unknown fbank backend {backend!r}; use auto, kaldifeat or lhotse")


def num_frames(num_samples: int, cfg: FeatureConfig = FeatureConfig()) -> int:
    """Frames of a waveform as fbank computes them (Kaldi's NumFrames)."""
    shift = int(cfg.sample_rate * cfg.frame_shift_ms / 1000)
    if cfg.snip_edges:
        length = int(cfg.sample_rate * cfg.frame_length_ms / 1000)
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    return (num_samples + shift // 2) // shift


@dataclass(frozen=True)
class PitchConfig:
    rate: int = 8000  # F0 is searched on a copy resampled to this rate
    window_ms: float = 40.0  # two periods of a 50 Hz voice
    min_f0: float = 50.0
    max_f0: float = 400.0
    octave_cost: float = 0.05  # per octave of lag: favours the higher of two F0 candidates
    # (Praat uses 0.01 on its own normalisation; with this one 0.01 lets a clean 100 Hz
    # voice jump an octave down, 0.05 tracks 60-380 Hz glides within 0.05 semitones)
    voiced_threshold: float = 0.45  # normalised autocorrelation above which a frame is voiced
    median_frames: int = 5  # median filter of the log-F0 track, against single-frame jumps


def _fold_octaves(log_f0: np.ndarray) -> np.ndarray:
    """Octave errors of voiced frames: each frame is moved by whole octaves to within half
    an octave of the utterance's median F0 (one speaker's tones span less than that)."""
    ref = np.median(log_f0)
    return log_f0 + np.round((ref - log_f0) / np.log(2.0)) * np.log(2.0)


def pitch(samples: Audio, sample_rate: int, cfg: FeatureConfig = FeatureConfig(),
          pcfg: PitchConfig = PitchConfig()) -> torch.Tensor:
    """(T, 2) pitch features on fbank's frame grid: [voicing, log F0 in semitones].

    Per 10 ms frame (centred where fbank's frame is), on the waveform resampled to
    8 kHz: the autocorrelation of a 40 ms Hann-windowed frame divided by the
    window's own (Boersma 1993), its peak between 1/max_f0 and 1/min_f0 (refined by
    a parabola) gives F0, its height the voicing (0 silence .. 1 periodic). Octave
    jumps are folded back to within half an octave of the utterance's median, the
    log-F0 track is median filtered, carried through unvoiced frames by linear
    interpolation (a continuous track, as Kaldi's pitch), and normalised per
    utterance by its voicing-weighted mean: 12 * log2(F0 / mean F0), the speaker's
    register removed, the tone contour kept. Semitones keep the stored values well
    above lilcom's quantisation step (a 5% F0 change is 0.85).
    """
    from scipy.ndimage import binary_opening, median_filter
    from scipy.signal import resample_poly

    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    T = num_frames(x.size, cfg)
    if T == 0:
        return torch.zeros(0, PITCH_DIMS)
    g = math.gcd(int(sample_rate), pcfg.rate)
    x = resample_poly(x, pcfg.rate // g, int(sample_rate) // g)
    rate = pcfg.rate
    hop = rate * cfg.frame_shift_ms / 1000
    win = int(round(rate * pcfg.window_ms / 1000))
    min_lag = int(math.floor(rate / pcfg.max_f0))
    max_lag = int(math.ceil(rate / pcfg.min_f0))
    # frame t is centred at (t + 1/2) shifts (fbank with snip_edges=False)
    starts = np.round((np.arange(T) + 0.5) * hop).astype(np.int64) - win // 2
    pad = win
    xp = np.pad(x, (pad, pad + win))
    frames = xp[starts[:, None] + pad + np.arange(win)[None, :]]
    frames = frames - frames.mean(axis=1, keepdims=True)
    window = np.hanning(win + 2)[1:-1]
    frames *= window
    nfft = 1 << int(math.ceil(math.log2(win + max_lag + 2)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, nfft)) ** 2, nfft)[:, : max_lag + 2]
    wac = np.fft.irfft(np.abs(np.fft.rfft(window, nfft)) ** 2, nfft)[: max_lag + 2]
    energy = ac[:, :1]
    r = ac / np.maximum(energy, 1e-12) / (wac / wac[0])
    lags = np.arange(min_lag, max_lag + 1)
    score = r[:, lags] - pcfg.octave_cost * np.log2(lags / min_lag)[None, :]
    best = lags[np.argmax(score, axis=1)]
    rows = np.arange(T)
    left, mid, right = r[rows, best - 1], r[rows, best], r[rows, best + 1]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / np.where(
        np.abs(denom) > 1e-9, denom, 1.0), 0.0).clip(-0.5, 0.5)
    voicing = np.clip(mid, 0.0, 1.0)
    voicing[energy[:, 0] < 1e-10 * win] = 0.0  # digital silence
    log_f0 = np.log(rate / (best + shift))
    # voiced: above the threshold for at least 3 frames in a row (no isolated blips)
    voiced = binary_opening(voicing >= pcfg.voiced_threshold, structure=np.ones(3, bool))
    if voiced.sum() >= 2:
        idx = np.flatnonzero(voiced)
        v = _fold_octaves(log_f0[idx])
        track = np.interp(np.arange(T), idx, v)
        if pcfg.median_frames > 1 and T >= pcfg.median_frames:
            track = median_filter(track, size=pcfg.median_frames, mode="nearest")
        weights = voicing * voiced
        mean = float((track * weights).sum() / weights.sum())
        semitones = 12.0 / math.log(2.0) * (track - mean)
    else:  # no periodic stretch: nothing to say about pitch
        semitones = np.zeros(T)
    out = np.stack([voicing, semitones], axis=1)
    return torch.from_numpy(out.astype(np.float32))


def base_features(samples: Audio, sample_rate: int, cfg: FeatureConfig = FeatureConfig(),
                  backend: str = "auto") -> torch.Tensor:
    """The stored features of one waveform: fbank, with pitch appended when cfg.pitch."""
    feats = fbank(samples, sample_rate, cfg, backend)
    if cfg.pitch:
        p = pitch(samples, sample_rate, cfg)
        if p.shape[0] != feats.shape[0]:  # both follow num_frames; guard other fbank options
            n = min(p.shape[0], feats.shape[0])
            feats, p = feats[:n], p[:n]
        feats = torch.cat([feats, p], dim=1)
    return feats


def _delta_scales(order: int, window: int) -> list[torch.Tensor]:
    """Kaldi's DeltaFeatures filters: scales[k] is the (2*k*window+1)-tap filter of order k."""
    scales = [torch.tensor([1.0], dtype=torch.float64)]
    norm = 2 * sum(j * j for j in range(1, window + 1))
    for _ in range(order):
        prev = scales[-1]
        cur = torch.zeros(prev.numel() + 2 * window, dtype=torch.float64)
        for j in range(-window, window + 1):
            cur[j + window: j + window + prev.numel()] += j * prev / norm
        scales.append(cur)
    return scales


@lru_cache(maxsize=None)
def _delta_taps(order: int, window: int) -> tuple[tuple[float, ...], ...]:
    """_delta_scales of orders 1..order as floats, built once: add_deltas runs on every
    utterance of every training batch, in the training process."""
    return tuple(tuple(s.tolist()) for s in _delta_scales(order, window)[1:])


def add_deltas(feats: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """Append delta features like Kaldi's add-deltas: (T, D) -> (T, D * (order + 1)).

    The k-th order filter is the first-order regression filter
    d_t = sum_{n=1}^{w} n (c_{t+n} - c_{t-n}) / (2 sum n^2) convolved k times
    with itself; frames outside [0, T) are replaced by the nearest edge frame.
    """
    T = feats.shape[0]
    out = [feats]
    for scale in _delta_taps(order, window):
        half = (len(scale) - 1) // 2
        padded = torch.cat([feats[:1].expand(half, -1), feats, feats[-1:].expand(half, -1)])
        d = torch.zeros_like(feats)
        for k, w in enumerate(scale):
            if w != 0.0:
                d += w * padded[k:k + T]
        out.append(d)
    return torch.cat(out, dim=-1)


def stack_and_subsample(feats: torch.Tensor, stack: int = 8, subsample: int = 3) -> torch.Tensor:
    """Low frame rate input: (T, D) -> (ceil(T / subsample), D * stack).

    Output frame t stacks input frames 3t-3 .. 3t+4 (for stack 8, subsample 3:
    (stack - 1) // 2 frames of left context, the rest to the right), the
    nearest edge frame standing in beyond the utterance.
    """
    T = feats.shape[0]
    if T == 0:
        return feats.new_zeros(0, feats.shape[1] * stack)
    left = (stack - 1) // 2
    centres = torch.arange(0, T, subsample)
    idx = (centres[:, None] + torch.arange(-left, stack - left)[None, :]).clamp(0, T - 1)
    return feats[idx].reshape(len(centres), -1)


def num_output_frames(num_fbank_frames: int, subsample: int = 3) -> int:
    return -(-num_fbank_frames // subsample)


class GlobalCMVN:
    """Global mean and variance normalisation with statistics from training data.

    Accumulate with `accumulate(feats)` over the training set, `save()` the
    statistics (a dict of tensors, loaded with weights_only=True), and apply
    with `normalize(feats)`.
    """

    def __init__(self, dim: int):
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sum_sq = torch.zeros(dim, dtype=torch.float64)
        self.count = 0

    def accumulate(self, feats: torch.Tensor) -> None:
        if feats.shape[-1] != self.sum.numel():
            raise ValueError(f"features have {feats.shape[-1]} dims, CMVN has {self.sum.numel()}")
        f = feats.reshape(-1, feats.shape[-1]).double()
        self.sum += f.sum(0)
        self.sum_sq += (f * f).sum(0)
        self.count += f.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.count, 1)

    @property
    def std(self) -> torch.Tensor:
        var = self.sum_sq / max(self.count, 1) - self.mean ** 2
        return var.clamp_min(1e-10).sqrt()

    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        if self.count == 0:
            raise ValueError("CMVN statistics are empty: accumulate training features first")
        return ((feats - self.mean.to(feats.dtype)) / self.std.to(feats.dtype))

    def state_dict(self) -> dict:
        return {"sum": self.sum, "sum_sq": self.sum_sq, "count": torch.tensor(self.count)}

    def save(self, path: str | Path) -> None:
        atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, feature_config: "FeatureConfig | None" = None) -> "GlobalCMVN":
        """Load statistics; with `feature_config`, refuse ones of another dimension."""
        state = safe_torch_load(path, what="CMVN statistics")
        try:
            cmvn = cls(state["sum"].numel())
            cmvn.sum, cmvn.sum_sq = state["sum"].double(), state["sum_sq"].double()
            cmvn.count = int(state["count"])
        except (KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"{path}: not a CMVN statistics file ({exc})") from exc
        if feature_config is not None and cmvn.sum.numel() != feature_config.base_dim:
            raise ValueError(f"{path}: statistics of {cmvn.sum.numel()} dims, the features "
                             f"({FEATURES_JSON} beside it) have {feature_config.base_dim}")
        return cmvn


def compute_features(samples: Audio, sample_rate: int, cfg: FeatureConfig = FeatureConfig(),
                     cmvn: GlobalCMVN | None = None, backend: str = "auto") -> torch.Tensor:
    """The whole front end: waveform -> (ceil(T/3), cfg.model_dim) model input."""
    feats = add_deltas(base_features(samples, sample_rate, cfg, backend), cfg.delta_order,
                       cfg.delta_window)
    if cmvn is not None:
        feats = cmvn.normalize(feats)
    return stack_and_subsample(feats, cfg.stack, cfg.subsample)
