"""Stage 0 through one of lhotse's corpus recipes, with the corpus's bad files left out.

lhotse's recipes (``prepare_librispeech``, ``prepare_aishell2`` ...) open every audio file
they are pointed at and stop at the first one they cannot read: lhotse 1.33's
``prepare_librispeech`` raises ``AudioLoadingError ... Format not recognised`` on an empty
flac, and some stop on a transcript line they cannot split. One bad file among 280,000
must not stop a recipe, so a stage 0 built on a lhotse recipe goes through five steps:

1. ``read_transcripts``: the corpus's "<utt> <text>" files of one part, with duplicate
   ids and malformed lines noted;
2. ``screen``: every audio file and transcript of the part checked first: audio missing,
   unreadable, empty, zero-length or at another sample rate, audio with no transcript, an
   empty transcript, a duplicate id; each problem an ``Excluded`` record (utterance,
   file, reason), the rest the part's usable utterances;
3. ``run_recipe``: the lhotse recipe on the corpus itself when nothing found would stop
   it, otherwise on a view of the corpus that holds only the usable utterances (a
   symlink tree in a scratch dir, with transcripts rewritten; removed afterwards);
4. ``cuts_from_recipe``: one cut per usable utterance with its normalised transcript,
   its recording pointing at the real file (never at the view); what the recipe or the
   normaliser left out joins the exclusions;
5. ``speechmoe.data.manifests.report_excluded``: each exclusion logged by file and
   reason, all of them in ``excluded_<set>.txt``, a count per reason.

What is corpus-specific stays in the recipe's script: where the files are, the view's
directory layout and transcript format, the lhotse function. Users:
local/prepare_aishell2.py, local/prepare_librispeech.py. lhotse is imported inside the
functions that need it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

from speechmoe.data.manifests import Excluded, check_wavs, make_cut

log = logging.getLogger(__name__)


@dataclass
class Transcripts:
    """The "<utt> <text>" lines of a part's transcript files."""

    text: dict[str, str] = field(default_factory=dict)   # utt -> raw transcript
    where: dict[str, str] = field(default_factory=dict)  # utt -> "file:line"
    excluded: list[Excluded] = field(default_factory=list)
    malformed: bool = False  # blank or id-only lines, duplicate ids: a strict reader stops


def read_transcripts(paths: Iterable[Path]) -> Transcripts:
    """Read "<utt><space or tab><text>" lines of every file; the first line of an id wins."""
    out = Transcripts()
    for path in paths:
        with Path(path).open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                fields = line.strip().split(maxsplit=1)
                if not fields:
                    out.malformed = True  # a reader that takes the first field fails here
                    continue
                utt = fields[0]
                text = fields[1] if len(fields) > 1 else ""
                if not text:
                    out.malformed = True  # "<utt>" alone: no text to split off
                if utt in out.text:
                    out.excluded.append(Excluded(
                        utt, f"{path}:{n}", f"duplicate utterance id in {Path(path).name} "
                        f"(also {out.where[utt]}; the first line is used)"))
                    out.malformed = True
                    continue
                out.text[utt] = text
                out.where[utt] = f"{path}:{n}"
    return out


@dataclass
class Part:
    """One part of a corpus after the screen (a lhotse recipe's "dataset part")."""

    name: str
    usable: dict[str, Path]  # utt -> its audio file, in the corpus itself
    text: dict[str, str]     # utt -> raw transcript, every one read
    excluded: list[Excluded]
    unsafe: bool             # the lhotse recipe would stop on the part as it is

    @property
    def total(self) -> int:
        """Utterances the part names anywhere: transcripts, audio files, problems."""
        return len(set(self.text) | set(self.usable) | {e.utt for e in self.excluded})


def screen(name: str, audio: Iterable[Path], transcripts: Transcripts, *,
           expected_audio: Callable[[str], str], expected_transcript: Callable[[str], str],
           sample_rate: Optional[int] = 16000, num_jobs: int = 1,
           utt_of: Callable[[Path], str] = lambda p: p.stem) -> Part:
    """Check every audio file and transcript of one part before a lhotse recipe reads it.

    audio: the part's audio files (found on disk); transcripts: its read transcripts;
    expected_audio(utt) / expected_transcript(utt): where the corpus would have them,
    for the messages of a missing one. An unreadable, empty or zero-length file, one at
    another sample rate, or a duplicate id makes the part unsafe (the recipe would stop or
    pick one at random); audio without a transcript, a transcript without audio and an
    empty transcript are only left out (the recipes skip them themselves).
    """
    excluded = list(transcripts.excluded)
    unsafe = transcripts.malformed
    found: dict[str, Path] = {}
    for path in sorted(Path(p) for p in audio):
        utt = utt_of(path)
        if utt in found:
            excluded.append(Excluded(utt, str(path), f"duplicate utterance id (also "
                                     f"{found[utt]})"))
            unsafe = True
        elif utt not in transcripts.text:
            excluded.append(Excluded(utt, str(path), "no transcript in "
                                     f"{expected_transcript(utt)}"))
        else:
            found[utt] = path
    reported = {e.utt for e in excluded}
    for utt in sorted(set(transcripts.text) - set(found) - reported):
        where = Path(transcripts.where[utt].rsplit(":", 1)[0]).name
        line = transcripts.where[utt].rsplit(":", 1)[1]
        excluded.append(Excluded(utt, expected_audio(utt), f"audio missing (listed in "
                                 f"{where}:{line}, no such file)"))
    for utt in sorted(found):
        if not transcripts.text[utt].strip():
            excluded.append(Excluded(utt, str(found.pop(utt)), "empty transcript"))
    bad = check_wavs([str(p) for p in found.values()], sample_rate, num_jobs)
    for utt, path in sorted(found.items()):
        if str(path) in bad:
            excluded.append(Excluded(utt, str(path), bad[str(path)]))
            del found[utt]
            unsafe = True
    log.info("%s: %d transcripts, %d usable audio files, %d problems", name,
             len(transcripts.text), len(found), len(excluded))
    return Part(name, found, dict(transcripts.text), excluded, unsafe)


def make_view(view: Path, links: Mapping[Path, Path], files: Mapping[Path, str]) -> Path:
    """A corpus tree under `view`: each relative path of `links` a symlink to its real
    file, each of `files` a text file with its content. An old view is removed first."""
    if view.exists() or view.is_symlink():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    for rel, real in links.items():
        link = view / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(real).resolve())
    for rel, content in files.items():
        path = view / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return view


def run_recipe(prepare: Callable, corpus: Path, parts: Mapping[str, Part], view: Path,
               layout: Callable[[Mapping[str, Part]], tuple[dict, dict]], logger=None,
               **kwargs) -> dict:
    """prepare(corpus, **kwargs), lhotse's recipe, or prepare(view, ...) when a part is
    unsafe: layout(parts) gives the view's (links, files) (see make_view). The view is
    removed afterwards; the recipe's own per-file warnings are silenced (the screen has
    reported each file already)."""
    logger = logger or log
    unsafe = [name for name, p in parts.items() if p.unsafe]
    target = corpus
    if unsafe:
        logger.warning("files in %s would stop lhotse's recipe: it reads a view of the "
                       "corpus without them (%s)", ", ".join(unsafe), view)
        links, files = layout(parts)
        target = make_view(view, links, files)
    name = f"{prepare.__module__}.{prepare.__name__}"
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)
    try:
        return prepare(target, **kwargs)
    except Exception as exc:  # the screen missed a problem: say where, keep the cause
        raise ValueError(f"lhotse's {name} failed on {target}: {type(exc).__name__}: "
                         f"{exc}") from exc
    finally:
        root_logger.setLevel(level)
        if target is not corpus:
            shutil.rmtree(view, ignore_errors=True)


def on_real_file(recording, path: Path):
    """The recording with its audio source at `path` (the corpus's file, not a view's)."""
    from lhotse import AudioSource, Recording

    src = recording.sources[0]
    if len(recording.sources) == 1 and src.type == "file" and src.source == str(path):
        return recording
    return Recording(id=recording.id, sources=[AudioSource("file", src.channels, str(path))],
                     sampling_rate=recording.sampling_rate,
                     num_samples=recording.num_samples, duration=recording.duration)


def cuts_from_recipe(part: Part, manifests: Mapping, normalize: Callable, recipe: str,
                     language: Optional[str] = None) -> list:
    """One cut per usable utterance of the recipe's {"recordings", "supervisions"} for the
    part, sorted by id; adds to part.excluded every utterance whose transcript `normalize`
    refuses (its reason) and every usable one the recipe left out."""
    recordings = manifests["recordings"]
    cuts, seen = [], set()
    for sup in manifests["supervisions"]:
        real = part.usable.get(sup.id)
        if real is None or sup.id in seen:  # screened out, or a second supervision
            continue
        seen.add(sup.id)
        words, reason = normalize(sup.text or "")
        if words is None:
            raw = part.text.get(sup.id, sup.text)
            part.excluded.append(Excluded(sup.id, str(real), f"{reason} (transcript {raw!r})"))
            continue
        rec = on_real_file(recordings[sup.recording_id], real)
        cuts.append(make_cut(sup.id, rec, words, speaker=sup.speaker, language=language))
    for utt in sorted(set(part.usable) - seen):
        part.excluded.append(Excluded(utt, str(part.usable[utt]), f"left out by {recipe}"))
    return sorted(cuts, key=lambda c: c.id)
