"""Room impulse responses and noise for robustness data (paper section 4.2).

The paper multiplies its training data with simulated RIRs of rectangular rooms
of varied size, speaker and microphone positions (image method). Here the RIRs
come from pyroomacoustics (lhotse's own generator needs torchaudio, which does
not load here), saved as wav `Recording`s, and applied with lhotse's reverb
transform. Pure image-source at full order overshoots the target RT60 by ~2x
and is slow; the hybrid image-source (order 3) + ray-tracing mode with air
absorption lands near the target in ~0.1-0.25 s per RIR, so it is used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from speechmoe.utils import atomic_path


@dataclass(frozen=True)
class RoomConfig:
    length: tuple[float, float] = (3.0, 10.0)
    width: tuple[float, float] = (3.0, 8.0)
    height: tuple[float, float] = (2.5, 4.0)
    rt60: tuple[float, float] = (0.2, 0.8)
    min_wall_distance: float = 0.5
    min_source_distance: float = 0.7
    max_rir_seconds: float = 1.0


def simulate_rir(rng: np.random.Generator, cfg: RoomConfig = RoomConfig(),
                 sample_rate: int = 16000) -> tuple[np.ndarray, dict]:
    """One RIR of a random shoebox room; returns (rir, description)."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(*cfg.length), rng.uniform(*cfg.width),
                     rng.uniform(*cfg.height)])
    rt60 = float(rng.uniform(*cfg.rt60))
    try:
        absorption, _ = pra.inverse_sabine(rt60, dims)
    except ValueError:  # RT60 too short for this room: Sabine cannot reach it
        rt60 = float(cfg.rt60[1])
        absorption, _ = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=3,
                       ray_tracing=True, air_absorption=True)
    margin = cfg.min_wall_distance

    def point(z_range):
        return np.array([rng.uniform(margin, dims[0] - margin),
                         rng.uniform(margin, dims[1] - margin), rng.uniform(*z_range)])

    source = point((1.2, min(1.9, dims[2] - margin)))
    for _ in range(100):
        mic = point((0.7, min(1.6, dims[2] - margin)))
        if np.linalg.norm(mic - source) >= cfg.min_source_distance:
            break
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    rir = rir[: int(cfg.max_rir_seconds * sample_rate)]
    rir /= np.abs(rir).max() + 1e-9
    info = {"room": [round(float(d), 2) for d in dims], "rt60_target": round(rt60, 3),
            "rt60_measured": round(float(pra.experimental.measure_rt60(rir, sample_rate)), 3),
            "distance": round(float(np.linalg.norm(mic - source)), 2)}
    return rir, info


# Noise types. The held-out ones make test_spon (stage 1) and are never mixed into
# training data; training noise (the augmentation copy) uses the others, or the user's
# own recordings (a MUSAN-style directory).
HELDOUT_NOISE_KINDS = ("white", "pink", "brown")
TRAIN_NOISE_KINDS = ("babble", "music", "hum", "blue", "bandpass")


def colored_noise(rng: np.random.Generator, kind: str, num_samples: int) -> np.ndarray:
    """White, pink (1/f), brown (1/f^2) or blue (f) noise, scaled to peak 0.5."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}[kind]
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=num_samples)
    return (0.5 * noise / np.abs(noise).max()).astype(np.float32)


def write_wav_recording(path: Path, samples: np.ndarray, sample_rate: int, recording_id: str):
    import soundfile as sf
    from lhotse import Recording

    with atomic_path(path, keep_suffix=True) as tmp:
        sf.write(tmp, samples, sample_rate, subtype="FLOAT")
    return Recording.from_file(path, recording_id=recording_id)


def reverberate(cuts, rirs, seed: int = 0, fraction: float = 1.0, affix: bool = True):
    """A reverberant copy of (a random `fraction` of) `cuts`, one random RIR per cut.

    lhotse's CutSet.reverb_rir draws a single RIR for the whole set (random.choice
    runs once, outside the per-cut map), so the RIR is drawn here, per cut.
    """
    from lhotse import CutSet

    rng = random.Random(seed)
    rirs = list(rirs)
    out = []
    for cut in cuts:
        if rng.random() < fraction:
            out.append(cut.reverb_rir(rir_recording=rng.choice(rirs), affix_id=affix))
    return CutSet.from_cuts(out)


def add_noise(cuts, noises, snr_range: tuple[float, float], seed: int = 0):
    """Mix each cut with a random stretch of a random noise recording at a random SNR."""
    from lhotse import CutSet

    rng = random.Random(seed)
    noises = list(noises)
    out = []
    for cut in cuts:
        noise = rng.choice(noises)
        if noise.duration < cut.duration:
            raise ValueError(f"noise recording {noise.id} ({noise.duration:.1f} s) is shorter "
                             f"than cut {cut.id} ({cut.duration:.1f} s)")
        offset = rng.uniform(0, noise.duration - cut.duration)
        snr = rng.uniform(*snr_range)
        out.append(mix_noise(cut, noise, offset, snr, f"{noise.id}-{cut.id}"))
    return CutSet.from_cuts(out)


def mix_noise(cut, noise, offset: float, snr: float, noise_id: str):
    """``cut`` mixed at ``snr`` dB with the stretch of recording ``noise`` that starts at
    ``offset`` seconds and lasts as long as the cut (lhotse Cut.mix; the cut keeps its id)."""
    from lhotse import MonoCut

    noise_cut = MonoCut(id=noise_id, start=offset, duration=cut.duration, channel=0,
                        recording=noise)
    return cut.mix(noise_cut, snr=snr, preserve_id="left")


def _peak(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (peak * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def music_noise(rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Chords of harmonic tones (3 notes, 6 decaying harmonics each) changing every
    0.25-1 s: tonal, non-stationary background unlike any colored noise."""
    out = np.zeros(num_samples)
    pos = 0
    while pos < num_samples:
        n = min(num_samples - pos, int(rng.uniform(0.25, 1.0) * sample_rate))
        t = np.arange(n) / sample_rate
        env = np.exp(-t * rng.uniform(1.0, 6.0))
        for midi in rng.integers(45, 84, size=3):
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            for h in range(1, 7):
                if h * f0 < sample_rate / 2:
                    out[pos:pos + n] += env * np.sin(2 * np.pi * h * f0 * t
                                                     + rng.uniform(0, 2 * np.pi)) / h
        pos += n
    return _peak(out)


def hum_noise(rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """Mains hum (50 or 60 Hz and its harmonics) over a little white noise, like a fan or
    a transformer."""
    t = np.arange(num_samples) / sample_rate
    f0 = rng.choice([50.0, 60.0])
    out = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) / h ** 0.7
              for h in range(1, 12))
    return _peak(out + 0.05 * rng.standard_normal(num_samples))


def bandpass_noise(rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """White noise band-passed to a random band of 1-3 octaves between 100 Hz and 6 kHz."""
    lo = rng.uniform(100.0, 2000.0)
    hi = min(lo * 2 ** rng.uniform(1.0, 3.0), 6000.0)
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spectrum[(freqs < lo) | (freqs > hi)] = 0.0
    return _peak(np.fft.irfft(spectrum, n=num_samples))


def babble_noise(rng: np.random.Generator, num_samples: int, speech: list[np.ndarray],
                 talkers: tuple[int, int] = (4, 7)) -> np.ndarray:
    """Several talkers at once: each a random sequence of the given utterances (training
    speech), equal in level, summed."""
    if not speech:
        raise ValueError("babble noise needs speech recordings")
    out = np.zeros(num_samples)
    for _ in range(int(rng.integers(talkers[0], talkers[1] + 1))):
        track, pos = np.zeros(num_samples), int(rng.integers(0, 16000))
        while pos < num_samples:
            utt = speech[int(rng.integers(len(speech)))]
            n = min(len(utt), num_samples - pos)
            track[pos:pos + n] = utt[:n]
            pos += n
        out += track / (np.sqrt(np.mean(track ** 2)) + 1e-9)
    return _peak(out)


def training_noise_bank(out_dir: Path, per_kind: int, seconds: float, seed: int,
                        speech_cuts=None, sample_rate: int = 16000,
                        kinds: tuple[str, ...] = TRAIN_NOISE_KINDS) -> list:
    """Noise for training (out_dir/noise_train/*.wav): kinds disjoint from the held-out
    ones. Babble needs `speech_cuts` (training utterances; left out without them)."""
    bad = sorted(set(kinds) & set(HELDOUT_NOISE_KINDS))
    if bad:
        raise ValueError(f"noise kinds {bad} are held out for test sets")
    rng = np.random.default_rng(seed + 1)
    num = int(seconds * sample_rate)
    speech = []
    if "babble" in kinds and speech_cuts is not None:
        cuts = list(speech_cuts)
        pick = rng.choice(len(cuts), size=min(len(cuts), 200), replace=False)
        speech = [cuts[int(i)].load_audio()[0].astype(np.float64) for i in pick]
    recs = []
    for kind in kinds:
        if kind == "babble" and not speech:
            continue
        for i in range(per_kind):
            if kind == "babble":
                x = babble_noise(rng, num, speech)
            elif kind == "music":
                x = music_noise(rng, num, sample_rate)
            elif kind == "hum":
                x = hum_noise(rng, num, sample_rate)
            elif kind == "bandpass":
                x = bandpass_noise(rng, num, sample_rate)
            else:
                x = colored_noise(rng, kind, num)
            nid = f"noise-{kind}-{i:02d}"
            recs.append(write_wav_recording(out_dir / "noise_train" / f"{nid}.wav", x,
                                            sample_rate, nid))
    return recs


def noise_dir_recordings(dirs: list[Path], sample_rate: int = 16000) -> list:
    """Every audio file (wav, flac) under the given directories, e.g. MUSAN's noise/ and
    music/ (speech/ too, for babble-like noise), as recordings at `sample_rate`."""
    from lhotse import Recording

    recs = []
    for d in dirs:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"noise directory {d}: not found")
        files = sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            raise ValueError(f"noise directory {d}: no .wav or .flac files")
        for f in files:
            rid = "noise-" + str(f.relative_to(d).with_suffix("")).replace("/", "-")
            try:
                rec = Recording.from_file(f, recording_id=rid)
            except Exception as exc:
                raise ValueError(f"noise file {f}: unreadable ({exc})") from exc
            if rec.num_channels != 1:
                raise ValueError(f"noise file {f}: {rec.num_channels} channels, expected mono")
            recs.append(rec if rec.sampling_rate == sample_rate else rec.resample(sample_rate))
    return recs


def rir_bank(out_dir: Path, num: int, seed: int, cfg: RoomConfig = RoomConfig(),
             sample_rate: int = 16000, log=None) -> tuple[list, list[dict]]:
    """Simulate `num` RIRs into out_dir/wav; return (recordings, descriptions). The same
    seed gives the same RIRs (the ray tracer's own generator is seeded too)."""
    import pyroomacoustics as pra
    from tqdm import tqdm

    # The rooms come from rng; the ray tracer draws from pyroomacoustics' global generators,
    # seeded from the OS unless set: without this, every run simulated different RIRs.
    pra.random.seed(seed)
    rng = np.random.default_rng(seed)
    recs, infos = [], []
    for i in tqdm(range(num), desc="simulate RIRs", mininterval=2.0):
        rir, info = simulate_rir(rng, cfg, sample_rate)
        rid = f"rir-{i:04d}"
        recs.append(write_wav_recording(out_dir / "wav" / f"{rid}.wav", rir, sample_rate, rid))
        infos.append({"id": rid, **info})
    if log is not None and infos:
        err = np.array([abs(x["rt60_measured"] - x["rt60_target"]) / x["rt60_target"]
                        for x in infos])
        log.info("RIRs: %d, RT60 target %.2f-%.2f s, median relative RT60 error %.0f%%",
                 num, cfg.rt60[0], cfg.rt60[1], 100 * float(np.median(err)))
    return recs, infos


def noise_bank(out_dir: Path, per_kind: int, seconds: float, seed: int,
               sample_rate: int = 16000) -> list:
    rng = np.random.default_rng(seed)
    recs = []
    for kind in HELDOUT_NOISE_KINDS:
        for i in range(per_kind):
            nid = f"noise-{kind}-{i:02d}"
            recs.append(write_wav_recording(out_dir / "noise" / f"{nid}.wav",
                                            colored_noise(rng, kind, int(seconds * sample_rate)),
                                            sample_rate, nid))
    return recs


def split_heldout(items: list, heldout: int, seed: int) -> tuple[list, list]:
    """(train, held-out) split of a list, deterministic."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:heldout])
    return ([x for i, x in enumerate(items) if i not in held],
            [x for i, x in enumerate(items) if i in held])


def measure_rt60(rir: np.ndarray, sample_rate: int) -> Optional[float]:
    import pyroomacoustics as pra

    return float(pra.experimental.measure_rt60(rir, sample_rate))
