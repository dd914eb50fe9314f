"""Audio files into lhotse Recordings, with every unusable file reported, never fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


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
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        return None, f"unreadable audio ({type(exc).__name__}{': ' + msg if msg else ''})"
    if rec.num_samples == 0 or rec.duration <= 0:
        return None, "zero-length audio (no samples)"
    if sample_rate is not None and rec.sampling_rate != sample_rate:
        return None, f"sampled at {rec.sampling_rate} Hz, expected {sample_rate} Hz"
    return rec, None
