"""Speaker voices for the embedded corpus: one espeak-ng voice variant per speaker.

espeak-ng changes a voice with a *variant*, a small text file of keywords (espeak-ng's
docs/voices.md; Debian ships 101 in espeak-ng-data/voices/!v/):

    pitch BASE MAX                   F0 range in Hz (the tones move within it)
    formant N FREQ% HEIGHT% WIDTH%   formant N (0-8) scaled: frequency, amplitude, bandwidth
    breath / breathw                 breath noise per formant, and its bandwidth
    flutter, roughness, voicing      F0 jitter, creak, voiced amplitude (%)
    consonants, tone                 consonant amplitude; a spectral tilt (freq amp pairs)
    echo DELAY AMPLITUDE             a room-like echo (ms, %)
    klatt N                          the Klatt synthesizer (variants 1-6) instead of the default

A speaker here is such a file with values drawn from ranges that span the shipped
variants (measured on Debian's 101: formant frequencies mostly 80-120%, male F0 bases
70-110 Hz, female 140-210 Hz, F0 maxima 1.3-1.6 times the base), written by
`draw_voices` from a seed, plus what no variant sets:

  - a vocal-tract-length warp `warp` (0.90-1.10): the synthesized audio is resampled so
    that every frequency (formants, consonant spectra) moves by that factor, as a longer
    or shorter vocal tract moves them. The warp would move F0 and the speaking rate too;
    both are put back by synthesizing at F0 / warp and at rate / warp (so the variant's
    `pitch` line says F0 / warp and the speaker's F0 is what `f0_base` says);
  - the speaker's speaking-rate range (espeak-ng words per minute) and pitch setting
    (espeak-ng -p) range, from which each of the speaker's utterances draws.

`espeak_data_dirs` writes the variants beside (symlinks to) the system's espeak-ng data;
`espeak-ng --path DIR -v cmn-latn-pinyin+<speaker>` then speaks with them.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

# Variants (Debian's names) the recipes used before voices were drawn per speaker.
LEGACY_TRAIN_VOICES = ("", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4",
                       "klatt", "klatt2", "klatt3")
LEGACY_HELDOUT_VOICES = ("m7", "f5", "klatt4", "m8")
# Klatt variants a drawn speaker may use: klatt 4 is left to the held-out test voice klatt4.
KLATT_MODES = (1, 2, 3, 5, 6)

SYSTEM_DATA_DIRS = ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/lib/aarch64-linux-gnu/"
                    "espeak-ng-data", "/usr/share/espeak-ng-data", "/usr/lib/espeak-ng-data")


@dataclass(frozen=True)
class SpeakerVoice:
    """One speaker: an espeak-ng variant plus the warp, rate and pitch ranges it reads at."""

    name: str  # the speaker id, also the variant's file name
    gender: str  # "male" or "female"
    f0_base: int  # Hz, after the warp
    f0_max: int  # Hz, after the warp
    formants: tuple[tuple[int, int, int], ...]  # (freq%, height%, width%) of formants 0-8
    warp: float = 1.0  # vocal-tract-length factor applied to the audio
    rate: tuple[int, int] = (150, 190)  # words per minute, each utterance draws one
    pitch_setting: tuple[int, int] = (45, 55)  # espeak-ng -p, each utterance draws one
    klatt: int = 0  # 0: espeak-ng's own synthesizer; 1-6: a Klatt variant
    breath: tuple[int, ...] = ()  # per formant 1-8 (empty: none)
    breathw: tuple[int, ...] = ()
    flutter: int = 0
    roughness: int = 0
    voicing: int = 100
    consonants: tuple[int, int] = (100, 100)
    tone: tuple[int, ...] = ()  # frequency/amplitude pairs (empty: espeak-ng's default)
    echo: tuple[int, int] = (0, 0)

    def variant_text(self) -> str:
        """The espeak-ng variant file of this speaker (F0 said before the warp undoes it)."""
        lines = ["language variant", f"name {self.name}", f"gender {self.gender}",
                 f"pitch {round(self.f0_base / self.warp)} {round(self.f0_max / self.warp)}"]
        lines += [f"formant {i} {f} {h} {w}" for i, (f, h, w) in enumerate(self.formants)]
        if self.breath:
            lines.append("breath " + " ".join(map(str, self.breath)))
        if self.breathw:
            lines.append("breathw " + " ".join(map(str, self.breathw)))
        lines += [f"flutter {self.flutter}", f"roughness {self.roughness}",
                  f"voicing {self.voicing}", f"consonants {self.consonants[0]} "
                  f"{self.consonants[1]}"]
        if self.tone:
            lines.append("tone " + " ".join(map(str, self.tone)))
        if self.echo[1]:
            lines.append(f"echo {self.echo[0]} {self.echo[1]}")
        if self.klatt:
            lines.append(f"klatt {self.klatt}")
        return "\n".join(lines) + "\n"

    def espeak_rate(self, wpm: int) -> int:
        """The -s to synthesize at so that the warped audio runs at `wpm`."""
        return max(80, round(wpm / self.warp))


def draw_voice(rng: random.Random, name: str, gender: Optional[str] = None) -> SpeakerVoice:
    """One speaker's voice, every value drawn from `rng` (ranges: the module's docstring)."""
    u, ri = rng.uniform, rng.randint
    gender = gender or rng.choice(("male", "female"))
    if gender == "male":
        f0_base, tract = ri(70, 115), u(0.90, 1.03)
    else:
        f0_base, tract = ri(135, 215), u(1.00, 1.15)
    f0_max = round(f0_base * u(1.3, 1.6))  # wider: F0 leaves the half octave around its
    # median that speechmoe.features.pitch folds octave errors back into
    # the variant's formant scale around the speaker's tract, each formant jittered
    formants = tuple((round(100 * tract * u(0.95, 1.05)) if i <= 5 else ri(90, 110),
                      ri(60, 130) if i >= 1 else ri(80, 125), ri(70, 160))
                     for i in range(9))
    breathy = rng.random() < 0.35
    return SpeakerVoice(
        name=name, gender=gender, f0_base=f0_base, f0_max=f0_max, formants=formants,
        warp=round(u(0.90, 1.10), 3),
        rate=(lambda c: (c - 12, c + 12))(ri(150, 190)),
        pitch_setting=(lambda c: (c - 6, c + 6))(ri(40, 60)),
        klatt=rng.choice(KLATT_MODES) if rng.random() < 0.25 else 0,
        breath=tuple(ri(0, 10) for _ in range(8)) if breathy else (),
        breathw=tuple(ri(100, 300) for _ in range(6)) if breathy and rng.random() < 0.5 else (),
        flutter=ri(0, 12), roughness=rng.choice((0, 0, 0, 1, 2, 3, 4, 5)),
        voicing=ri(70, 160), consonants=(ri(60, 130), ri(60, 130)),
        tone=(600, ri(120, 255), 1200, ri(80, 255), 2000, ri(40, 255))
        if rng.random() < 0.4 else (),
        echo=(ri(40, 150), ri(5, 20)) if rng.random() < 0.3 else (0, 0),
    )


def draw_voices(names: Sequence[str], seed: int) -> list[SpeakerVoice]:
    """A voice per name; the same names and seed give the same voices (half of them male,
    alternating, so that a small set is balanced too)."""
    rng = random.Random(f"speechmoe-voices-{seed}")
    return [draw_voice(rng, n, ("male", "female")[i % 2]) for i, n in enumerate(names)]


def save_voices(voices: Sequence[SpeakerVoice], path: Path) -> None:
    from speechmoe.utils import atomic_write_text

    atomic_write_text(path, json.dumps([asdict(v) for v in voices], indent=1) + "\n")


def load_voices(path: Path) -> dict[str, SpeakerVoice]:
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        voices = [SpeakerVoice(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                                  if isinstance(v, list) else v for k, v in r.items()})
                  for r in rows]
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a speaker voice list ({e})") from e
    return {v.name: v for v in voices}


def system_espeak_data() -> Path:
    """The installed espeak-ng data directory (the one holding voices/ and phontab)."""
    import subprocess

    for d in SYSTEM_DATA_DIRS:
        if (Path(d) / "phontab").is_file():
            return Path(d)
    r = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    if "Data at:" in r.stdout:
        d = Path(r.stdout.split("Data at:")[1].strip())
        if (d / "phontab").is_file():
            return d
    raise RuntimeError("espeak-ng's data directory not found (looked in "
                       f"{', '.join(SYSTEM_DATA_DIRS)}): run tools/install_system_deps.sh")


# espeak-ng lists at most 349 voices (N_VOICES_LIST), its 131 language voices included, and
# fails every synthesis beyond that: the variants go into data dirs of this many each.
VOICES_PER_DATA_DIR = 100


def espeak_data_dirs(voices: Sequence[SpeakerVoice], root: Path) -> dict[str, Path]:
    """Write the voices' variants beside (symlinks to) the system's espeak-ng data, in data
    dirs of VOICES_PER_DATA_DIR voices each (`root`/NNN/espeak-ng-data/voices/!v/); return
    each voice's dir, to pass to espeak-ng --path. Rewritten whole on every call."""
    system = system_espeak_data()
    voices = list(voices)
    out: dict[str, Path] = {}
    shutil.rmtree(root, ignore_errors=True)
    for k in range(0, len(voices), VOICES_PER_DATA_DIR):
        shard = root / f"{k // VOICES_PER_DATA_DIR:03d}"
        data = shard / "espeak-ng-data"
        (data / "voices" / "!v").mkdir(parents=True)
        for entry in system.iterdir():
            if entry.name != "voices":
                (data / entry.name).symlink_to(entry)
        # (voices/mb, MBROLA's, is left out: its 90 entries count against the limit)
        for v in voices[k:k + VOICES_PER_DATA_DIR]:
            (data / "voices" / "!v" / v.name).write_text(v.variant_text(), encoding="utf-8")
            out[v.name] = shard
    return out


# --- How voices differ, and whether each still says its tones ----------------------------

TONE_PROBE = ("ma1", "ma2", "ma3", "ma4")  # the four tones on one syllable, said apart


def long_term_spectrum(samples, sample_rate: int = 16000):
    """A voice's long-term spectrum: the mean 40-band log-Mel energy (natural log) of the
    frames within 30 dB of the loudest (speech, not the pauses)."""
    import numpy as np

    from speechmoe.features import fbank

    feats = fbank(samples, sample_rate).numpy()
    energy = np.log(np.exp(feats).sum(axis=1))
    keep = energy > energy.max() - 30 / (10 / np.log(10))  # 30 dB in natural-log units
    return feats[keep].mean(axis=0)


def spread(vectors) -> dict:
    """How far apart a set of voices' long-term spectra are, in dB: the mean pairwise
    Euclidean distance over the 40 bands divided by sqrt(40) (an RMS band difference), the
    same to the nearest other voice, and the mean per-band std across voices."""
    import numpy as np

    x = np.asarray(vectors, dtype=np.float64) * (10 / np.log(10))  # natural log -> dB
    if len(x) < 2:
        raise ValueError(f"a spread needs two voices or more, got {len(x)}")
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).mean(axis=2))
    off = d[~np.eye(len(x), dtype=bool)]
    np.fill_diagonal(d, np.inf)
    return {"voices": len(x), "mean_pairwise_db": float(off.mean()),
            "mean_nearest_db": float(d.min(axis=1).mean()),
            "band_std_db": float(x.std(axis=0).mean())}


def tone_shapes(syllables, sample_rate: int = 16000) -> list[tuple[float, float, float]]:
    """(start, middle, end) F0 of each syllable's voiced frames, in semitones around the
    mean of all of them: the waveforms (one syllable each) are joined with 0.2 s of silence
    and tracked as one utterance by speechmoe.features.pitch, so the syllables share one
    reference; each shape is the mean of the first, middle and last fifth of the voiced
    frames (voicing >= 0.45) inside its syllable's stretch."""
    import numpy as np

    from speechmoe.features import pitch

    gap = np.zeros(int(0.2 * sample_rate))
    parts, bounds, pos = [], [], 0
    for x in syllables:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        parts += [x, gap]
        bounds.append((pos, pos + len(x)))
        pos += len(x) + len(gap)
    p = pitch(np.concatenate(parts), sample_rate).numpy()
    hop = sample_rate // 100
    shapes = []
    for i, (a, b) in enumerate(bounds):
        seg = p[a // hop:b // hop]
        f0 = seg[seg[:, 0] >= 0.45, 1]
        if len(f0) < 5:
            raise ValueError(f"syllable {i + 1} of the tone probe has {len(f0)} voiced frames "
                             "(5 or more needed)")
        q = max(1, len(f0) // 5)
        mid = len(f0) // 2 - q // 2
        shapes.append((float(f0[:q].mean()), float(f0[mid:mid + q].mean()),
                       float(f0[-q:].mean())))
    return shapes


def classify_tones(shapes) -> list[int]:
    """The tone (1-4) each (start, middle, end) shape says, by Mandarin's contours said
    apart: 4 falls most (51), 3 dips lowest in its middle among the rest (214), 2 rises
    most among the two left (35), 1 is the last (55, high and level).
    Relative within one speaker's four syllables, so a speaker's register and range do
    not matter; wrong tones come out as a permutation that is not 1, 2, 3, 4."""
    if len(shapes) != 4:
        raise ValueError(f"expected the four syllables of the tone probe, got {len(shapes)}")
    slope = [e - s for s, _, e in shapes]
    tones = [0] * 4
    left = set(range(4))
    fall = min(left, key=lambda i: slope[i])
    tones[fall] = 4
    left.discard(fall)
    low = min(left, key=lambda i: shapes[i][1])
    tones[low] = 3
    left.discard(low)
    rise = max(left, key=lambda i: slope[i])
    tones[rise] = 2
    left.discard(rise)
    tones[left.pop()] = 1
    return tones
