"""Speech synthesis with Debian's espeak-ng, for the embedded corpus.

The voice is ``cmn-latn-pinyin`` (with variants such as ``+f2``): it reads
toned pinyin, so the audio says exactly the syllables of our lexicon (with
espeak-ng's own tone sandhi). The plain ``cmn`` voice reads most text as
English-spelled pinyin and is not used. Output is resampled to 16 kHz mono
16-bit with sox, in its repeatable mode (``-R``): the dither of the requantization
is otherwise seeded afresh on every call, and the same corpus came out different
on every synthesis.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

VOICE = "cmn-latn-pinyin"


@dataclass(frozen=True)
class SynthJob:
    utt_id: str
    pinyin: str  # space-separated toned syllables (the text, for a voice other than VOICE)
    variant: str  # espeak-ng voice variant, e.g. "f2" ("" for the default voice)
    speed: int  # words per minute (espeak-ng -s)
    pitch: int  # 0-99 (espeak-ng -p)
    wav: Path
    voice: str = VOICE  # espeak-ng voice; another language's, e.g. "en-us", reads plain text
    espeak_path: Optional[Path] = None  # espeak-ng --path: a data dir holding `variant`
    #   (speechmoe.data.voices.espeak_data_dirs); None: the system's
    warp: float = 1.0  # vocal-tract-length warp: the audio resampled so every frequency
    #   moves by this factor (sox speed; speed and pitch are pre-compensated by the caller)


def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found on PATH: run "
                           "`tools/install_system_deps.sh` (Debian packages espeak-ng, sox)")


def synthesize_one(job: SynthJob, sample_rate: int = 16000) -> Optional[str]:
    """Synthesize one utterance; return None on success, else an error message."""
    voice = job.voice + (f"+{job.variant}" if job.variant else "")
    job.wav.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".wav", dir=job.wav.parent) as raw:
        path = ["--path", str(job.espeak_path)] if job.espeak_path else []
        r = subprocess.run(["espeak-ng", *path, "-v", voice, "-s", str(job.speed), "-p",
                            str(job.pitch), "-w", raw.name, job.pinyin],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return f"espeak-ng failed ({r.returncode}): {r.stderr.strip()[:200]}"
        tmp_out = job.wav.with_suffix(".tmp.wav")
        r = subprocess.run(["sox", "-R", "-V1", raw.name, "-r", str(sample_rate), "-c", "1",
                            "-b", "16", str(tmp_out)] + (["speed", f"{job.warp:.4f}"] if job.warp != 1.0 else []),
                           capture_output=True, text=True)
        if r.returncode != 0:
            tmp_out.unlink(missing_ok=True)
            return f"sox failed ({r.returncode}): {r.stderr.strip()[:200]}"
        tmp_out.replace(job.wav)  # never leave a half-written wav under the final name
    return None


def synthesize(jobs: Iterable[SynthJob], num_jobs: int = 2, desc: str = "synthesize",
               skip_existing: bool = True) -> dict[str, str]:
    """Run jobs in parallel (each job is two subprocesses); return {utt_id: error} for failures."""
    from tqdm import tqdm

    check_tools()
    jobs = [j for j in jobs if not (skip_existing and j.wav.is_file())]
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=num_jobs) as pool:
        for job, err in tqdm(zip(jobs, pool.map(synthesize_one, jobs)), total=len(jobs),
                             desc=desc, mininterval=2.0):
            if err is not None:
                failures[job.utt_id] = err
    return failures
