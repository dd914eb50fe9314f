"""Audio: reading, probing and resampling, for recognition and for data preparation.

Recognition (speechmoe.recognizer, speechmoe.transcribe) reads whatever soundfile reads
(wav, flac, ogg, ...) at any sample rate (resampled with scipy's polyphase resampler,
anti-aliasing included) and any number of channels (averaged to mono): ``read_audio``,
``audio_info`` (the header only), ``FileWindows`` (a long file window by window) and
``prepare_samples`` (samples already in memory). A file that cannot be read, is empty or
is shorter than one 25 ms analysis frame raises AudioError naming it.

Data preparation never stops at one bad file: ``probe_recording`` (a file into a lhotse
Recording), ``probe_audio`` (a wav.scp entry, a file or a command) and ``check_wav`` (the
header only, cheap) give the reason a recording cannot be used instead.

soundfile, scipy and lhotse are imported by the functions that use them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import numpy as np

MIN_SECONDS = 0.025  # one analysis frame


class AudioError(ValueError):
    """A recording that cannot be recognised (unreadable, empty, too short)."""


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float32 samples at ``rate`` -> at ``target`` (polyphase, scipy); unchanged if equal."""
    if int(rate) == int(target):
        return samples
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target))
    return resample_poly(samples, int(target) // g, int(rate) // g).astype(np.float32)


def check_length(name: str, num_samples: int, sample_rate: int) -> None:
    """AudioError unless there is at least one 25 ms analysis frame of samples."""
    if num_samples < int(MIN_SECONDS * sample_rate):
        raise AudioError(f"{name}: too short ({num_samples / sample_rate * 1000:.0f} ms; "
                         f"at least {MIN_SECONDS * 1000:.0f} ms)")


def read_audio(path: Union[str, Path], sample_rate: int = 16000):
    """(mono float32 samples at sample_rate, seconds); AudioError naming the file."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"{path}: unreadable audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    samples = data.mean(axis=1)  # channels averaged
    samples = resample(samples, rate, sample_rate)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    check_length(str(path), len(samples), sample_rate)
    return samples, len(samples) / sample_rate


def audio_info(path: Union[str, Path]) -> tuple[int, int]:
    """(frames, sample rate) of an audio file without reading it; AudioError naming it."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: unreadable audio ({exc})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    return int(info.frames), int(info.samplerate)


def prepare_samples(name: str, samples, rate: int, sample_rate: int) -> np.ndarray:
    """Samples in memory (1-D, or 2-D with channels on the short axis) as mono float32 at
    sample_rate; AudioError naming them when too short."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1 if samples.shape[1] <= 8 else 0)
    samples = resample(samples, rate, sample_rate)
    check_length(name, len(samples), sample_rate)
    return samples


class FileWindows:
    """Reads [start, end) of a file in the model's sample rate, one window at a time
    (mono, resampled per window: the window edges, where resampling is least exact, are in
    the margins the long-form path drops)."""

    def __init__(self, path: Path, sample_rate: int):
        import soundfile as sf

        frames, self.rate = audio_info(path)
        self.path, self.sample_rate = Path(path), sample_rate
        self.total = int(frames * sample_rate // self.rate) if self.rate != sample_rate \
            else frames
        self.file = sf.SoundFile(str(path))

    def __call__(self, start: int, end: int):
        r, sr = self.rate, self.sample_rate
        a, b = (start * r) // sr, -(-end * r // sr)
        try:
            self.file.seek(a)
            data = self.file.read(b - a, dtype="float32", always_2d=True).mean(axis=1)
        except Exception as exc:
            raise AudioError(f"{self.path}: unreadable audio at {a / r:.1f} s ({exc})") from None
        data = resample(data, r, sr)[: end - start]
        if len(data) < end - start:
            data = np.pad(data, (0, end - start - len(data)))
        if not np.isfinite(data).all():
            raise AudioError(f"{self.path}: audio holds NaN or infinite samples "
                             f"(near {start / sr:.1f} s)")
        return data

    def close(self):
        self.file.close()


# ------------------------------------------------------------------- data preparation


def _unreadable(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"unreadable audio ({type(exc).__name__}{': ' + msg if msg else ''})"


def _unusable(frames: int, rate: int, sample_rate: Optional[int]) -> Optional[str]:
    """Why audio of this length and rate cannot be used, or None."""
    if frames <= 0:
        return "zero-length audio (no samples)"
    if sample_rate is not None and rate != sample_rate:
        return f"sampled at {rate} Hz, expected {sample_rate} Hz"
    return None


def probe_recording(path: str | Path, recording_id: str, sample_rate: Optional[int] = 16000):
    """(Recording, None) for a usable file, (None, reason) for a missing, corrupt, empty,
    zero-length or wrong-sample-rate one."""
    from lhotse import Recording

    path = Path(path)
    if not path.is_file():
        return None, "file not found"
    if path.stat().st_size == 0:
        return None, "empty file (0 bytes)"
    try:
        rec = Recording.from_file(path, recording_id=recording_id)
    except Exception as exc:  # soundfile / audioread raise many types on corrupt files
        return None, _unreadable(exc)
    reason = _unusable(rec.num_samples if rec.duration > 0 else 0, rec.sampling_rate,
                       sample_rate)
    return (None, reason) if reason else (rec, None)


def check_wav(path: str | Path, sample_rate: Optional[int] = 16000) -> Optional[str]:
    """Why an audio file cannot be used (header read only, cheap), or None if it is fine.

    The reasons read like probe_recording's.
    """
    import soundfile as sf

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return "file not found"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        inf = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types on corrupt headers
        return _unreadable(exc)
    return _unusable(inf.frames, inf.samplerate, sample_rate)


def probe_audio(path_or_cmd: str, recording_id: str, sample_rate: Optional[int] = 16000):
    """A wav.scp entry (a file, or a command ending in '|') -> (Recording, None) or
    (None, reason). Files go through probe_recording; a command is run once, its output
    read as audio."""
    entry = path_or_cmd.strip()
    if not entry.endswith("|"):
        return probe_recording(entry, recording_id, sample_rate)
    import io
    import subprocess

    import soundfile as sf
    from lhotse import AudioSource, Recording

    cmd = entry[:-1].strip()
    r = subprocess.run(cmd, shell=True, capture_output=True)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        return None, f"command failed ({r.returncode}){': ' + err[-1][:160] if err else ''}"
    try:
        inf = sf.info(io.BytesIO(r.stdout))
    except Exception as exc:
        return None, f"unreadable audio from command ({type(exc).__name__})"
    reason = _unusable(inf.frames, inf.samplerate, sample_rate)
    if reason:
        return None, reason
    rec = Recording(id=recording_id, sources=[AudioSource(type="command", channels=[0],
                                                          source=cmd)],
                    sampling_rate=inf.samplerate, num_samples=inf.frames,
                    duration=inf.frames / inf.samplerate)
    return rec, None
