"""What every corpus importer shares: transcript normalisers, audio checks, manifest writing.

A recipe's stage 0 turns its corpus into, per set, ``cuts_<set>.jsonl.gz``: one
MonoCut per utterance (cut id = utterance id) whose supervision text is the
normalised transcript, words separated by spaces, plus the LM text (the training
transcripts, one sentence per line). Importers built on this module:
local/prepare_aishell2.py and local/prepare_librispeech.py (lhotse's recipes, through
speechmoe.data.lhotse_prep) and local/import_kaldi_dir.py (any Kaldi data dir).

Nothing here is fatal for one bad utterance: an importer collects `Excluded`
records (utterance, file, reason) and `report_excluded` logs each one, writes
them to a file and logs a summary count per reason.

lhotse is imported inside the functions that need it.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from speechmoe.data.audio import check_wav
from speechmoe.text import CJK, normalize_sentence
from speechmoe.utils import atomic_path, atomic_write_text

# --------------------------------------------------------------------------- transcripts

# A run of Chinese characters and digits (numbers are spoken out inside it), a Latin
# word (apostrophes inside: LET'S), or any other single non-space character.
_MIXED_TOKEN = re.compile(rf"[{CJK}0-9.%]+|[A-Za-z]+(?:'[A-Za-z]+)*|\S")
# A word of any script (letters, marks, digits) with apostrophes inside.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

Normalized = tuple[Optional[list[str]], Optional[str]]  # (words, None) or (None, reason)


def normalize_mandarin(text: str, english_case: str = "upper") -> Normalized:
    """Mandarin with English words (AISHELL-2 style) -> words, or the reason it cannot be.

    Chinese runs are segmented with jieba after numbers are spoken out
    (speechmoe.text.normalize_sentence); Latin words are kept as words, in upper
    case by default (AISHELL-2's convention; cmudict is looked up case-blind).
    Punctuation separates words and is dropped; any other character (a symbol, a
    letter of another script) makes the transcript unusable: it would have to be
    spoken, and we cannot say how.
    """
    text = unicodedata.normalize("NFKC", text)
    words: list[str] = []
    for tok in _MIXED_TOKEN.findall(text):
        if tok[0].isascii() and tok[0].isalpha():
            words.append(tok.upper() if english_case == "upper" else tok.lower())
        elif len(tok) == 1 and unicodedata.category(tok).startswith("P") and tok not in "%":
            continue
        elif re.fullmatch(rf"[{CJK}0-9.%]+", tok):
            run = tok.strip(".")
            if not run:
                continue
            seg = normalize_sentence(run)
            if seg is None:
                return None, f"cannot speak {run!r}"
            words.extend(seg)
        else:
            return None, f"unspeakable character {tok!r} (U+{ord(tok[0]):04X})"
    if not words:
        return None, "empty transcript"
    return words, None


def normalize_words(text: str, case: str = "lower") -> Normalized:
    """Any space-separated language -> words: NFKC, case folded, punctuation dropped.

    Words are runs of letters and digits of any script with apostrophes inside
    (``don't``); numbers are kept as written. For BPE units, where the
    transcript's characters are the units' material.
    """
    text = unicodedata.normalize("NFKC", text)
    text = text.lower() if case == "lower" else text.upper() if case == "upper" else text
    words = _WORD.findall(text.replace("\u2019", "'"))
    if not words:
        return None, "empty transcript"
    return words, None


def normalize_none(text: str) -> Normalized:
    """The transcript as it is, split at whitespace (for text normalised beforehand)."""
    words = text.split()
    return (words, None) if words else (None, "empty transcript")


NORMALIZERS: dict[str, Callable[[str], Normalized]] = {
    "mandarin": normalize_mandarin,
    "lower": lambda t: normalize_words(t, "lower"),
    "upper": lambda t: normalize_words(t, "upper"),
    "none": normalize_none,
}


def get_normalizer(name: str) -> Callable[[str], Normalized]:
    if name not in NORMALIZERS:
        raise ValueError(f"unknown text normaliser {name!r}; one of {sorted(NORMALIZERS)}")
    return NORMALIZERS[name]


# --------------------------------------------------------------------------- exclusions


@dataclass(frozen=True)
class Excluded:
    utt: str
    path: str  # the audio file (or transcript file) concerned
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its details, for the summary ("unreadable audio", ...)."""
        return re.split(r"[:(']", self.reason, maxsplit=1)[0].strip()


def report_excluded(log, name: str, excluded: Sequence[Excluded], total: int,
                    out_file: Optional[Path] = None, max_logged: int = 50) -> None:
    """Log each excluded utterance (up to max_logged), list all in out_file, log a summary."""
    for e in excluded[:max_logged]:
        log.warning("%s: %s (%s): %s; excluded", name, e.path, e.utt, e.reason)
    if len(excluded) > max_logged:
        log.warning("%s: ... %d more (see the list)", name, len(excluded) - max_logged)
    if out_file is not None:
        atomic_write_text(out_file, "".join(f"{e.utt}\t{e.path}\t{e.reason}\n"
                                            for e in excluded))
    if excluded:
        counts = Counter(e.kind for e in excluded)
        log.warning("%s: excluded %d of %d utterances (%s)%s", name, len(excluded), total,
                    ", ".join(f"{k}: {n}" for k, n in counts.most_common()),
                    f"; list: {out_file}" if out_file else "")
    else:
        log.info("%s: all %d utterances usable", name, total)


# ------------------------------------------------------ audio checks (data.audio.check_wav)


def _check_chunk(args) -> list[Optional[str]]:
    paths, sample_rate = args
    return [check_wav(p, sample_rate) for p in paths]


def map_in_chunks(fn, items: Sequence, extra, num_jobs: int, min_parallel: int,
                  min_chunk: int) -> list:
    """[r for each item] where fn((chunk_of_items, extra)) returns one r per item.

    Runs in num_jobs processes (about 20 chunks per process, so that one slow
    chunk does not hold the others up) once there are min_parallel items or more.
    """
    items = list(items)
    if num_jobs <= 1 or len(items) < min_parallel:
        return fn((items, extra))
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(min_chunk, len(items) // (num_jobs * 20))
    jobs = [(items[i:i + chunk], extra) for i in range(0, len(items), chunk)]
    with ProcessPoolExecutor(num_jobs) as pool:
        return [r for part in pool.map(fn, jobs) for r in part]


def check_wavs(paths: Sequence[str | Path], sample_rate: Optional[int] = 16000,
               num_jobs: int = 1) -> dict[str, str]:
    """{path: reason} for every unusable file of `paths` (checked in num_jobs processes)."""
    paths = [str(p) for p in paths]
    reasons = map_in_chunks(_check_chunk, paths, sample_rate, num_jobs, 1000, 500)
    return {p: r for p, r in zip(paths, reasons) if r is not None}


# --------------------------------------------------------------------------- manifests


def make_cut(utt: str, recording, words: Sequence[str], speaker: Optional[str] = None,
             start: float = 0.0, duration: Optional[float] = None,
             language: Optional[str] = None):
    """One MonoCut named like the utterance, with one supervision holding its words."""
    from lhotse import MonoCut, SupervisionSegment

    duration = recording.duration - start if duration is None else duration
    sup = SupervisionSegment(id=utt, recording_id=recording.id, start=start,
                             duration=duration, channel=0, text=" ".join(words),
                             speaker=speaker, language=language)
    return MonoCut(id=utt, start=start, duration=duration, channel=0, recording=recording,
                   supervisions=[sup])


def write_manifests(cuts: Sequence, manifest_dir: Path, name: str) -> None:
    """recordings_/supervisions_/cuts_<name>.jsonl.gz, each written atomically."""
    from lhotse import CutSet, RecordingSet, SupervisionSet

    manifest_dir.mkdir(parents=True, exist_ok=True)
    recordings = {c.recording.id: c.recording for c in cuts}
    outputs = [
        (RecordingSet.from_recordings(recordings.values()), "recordings"),
        (SupervisionSet.from_segments(s for c in cuts for s in c.supervisions), "supervisions"),
        (CutSet.from_cuts(cuts), "cuts"),
    ]
    for manifest, kind in outputs:
        write_lhotse(manifest, manifest_dir / f"{kind}_{name}.jsonl.gz")


def write_lhotse(manifest, path: Path) -> None:
    """A lhotse manifest (CutSet, RecordingSet, ...) to path, atomically; the format
    follows path's suffixes (.jsonl.gz)."""
    with atomic_path(path, keep_suffix=True) as tmp:
        manifest.to_file(tmp)


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write lines atomically; return how many."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n
