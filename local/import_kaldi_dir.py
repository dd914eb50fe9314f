#!/usr/bin/env python3
"""Stage 0 for any corpus in a Kaldi data dir: wav.scp + text (+ utt2spk, segments) -> cuts.

    local/import_kaldi_dir.py --kaldi-dir /data/mycorpus/train --name train --out-dir data \
        --text-norm lower --lm-text data/text/lm_text.txt

The Kaldi data dir (one per set):

    wav.scp    <REC> <path to an audio file>   or   <REC> <command producing wav> |
    text       <UTT> <transcript>
    utt2spk    <UTT> <SPK>                       (optional: speakers are then unknown)
    segments   <UTT> <REC> <start s> <end s>     (optional: without it, UTT = REC and
                                                  an utterance is the whole file)

A missing dir or file stops the script at once, naming it. Then every utterance
is checked and the unusable ones are excluded and reported by file and reason
(<out-dir>/manifests/excluded_<name>.txt, with a count per reason): no wav.scp
entry, audio missing, unreadable, empty or not at --sample-rate, a segment
outside its recording, an empty or unspeakable transcript after --text-norm:

    mandarin   Chinese segmented into words (jieba), numbers spoken out, English words
               kept in upper case: for syllable units
    lower      (or upper) any space-separated language: case folded, punctuation
               dropped, words of letters/digits with inner apostrophes: for BPE units
    none       the text as it is, split at spaces (normalised beforehand)

Outputs: <out-dir>/manifests/{recordings,supervisions,cuts}_<name>.jsonl.gz (one
MonoCut per utterance, id = UTT, text = words separated by spaces),
<out-dir>/text/<name>.txt, and with --lm-text the set's transcripts as LM text
(give it for the training set only). A finished set is skipped on a rerun (redone when
its options change).

A corpus with a training and a dev set only: --heldout-speakers N moves N whole speakers
of the set (every k-th of the sorted speakers, k = speakers // N) into a set of their own,
--heldout-name (default train_dev), left out of the LM text too. It validates training and
tunes the acoustic scale, so that the corpus's dev set is decoded once, as a test set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechmoe.data.audio import probe_audio
from speechmoe.data.manifests import Excluded, get_normalizer, make_cut, map_in_chunks, \
    report_excluded, write_lines, write_manifests
from speechmoe.logs import cli_main, script_parser, setup_logger

REQUIRED = ("wav.scp", "text")


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__)
    p.add_argument("--kaldi-dir", type=Path, required=True, help="a Kaldi data dir (one set)")
    p.add_argument("--name", required=True, help="set name: manifests/cuts_<name>.jsonl.gz")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--text-norm", default="lower", choices=["mandarin", "lower", "upper", "none"])
    p.add_argument("--lm-text", type=Path, help="also write the transcripts here, as LM text")
    p.add_argument("--sample-rate", type=int, default=16000,
                   help="required sample rate (the features are 16 kHz)")
    p.add_argument("--language", default=None, help="stored in the supervisions")
    p.add_argument("--num-jobs", type=int, default=2)
    p.add_argument("--heldout-speakers", type=int, default=0,
                   help="move this many whole speakers into --heldout-name (0: none)")
    p.add_argument("--heldout-name", default="train_dev",
                   help="the set of the held-out speakers")
    return p


def hold_out(cuts: list, num_speakers: int, source: Path) -> tuple[list, list]:
    """(kept cuts, held-out cuts): every k-th speaker of the sorted speakers held out."""
    speakers = sorted({c.supervisions[0].speaker for c in cuts} - {None})
    if not speakers:
        raise ValueError(f"{source}: --heldout-speakers needs speakers (an utt2spk file)")
    if num_speakers >= len(speakers):
        raise ValueError(f"{source}: --heldout-speakers {num_speakers}, but the set has only "
                         f"{len(speakers)} speakers (some must stay for training)")
    step = len(speakers) // num_speakers
    held = set(speakers[step - 1::step][:num_speakers])
    return ([c for c in cuts if c.supervisions[0].speaker not in held],
            [c for c in cuts if c.supervisions[0].speaker in held])


def read_table(path: Path, min_fields: int = 2) -> tuple[dict[str, str], list[str]]:
    """A Kaldi table "<key> <rest>" -> {key: rest}, and the problems of malformed lines."""
    table: dict[str, str] = {}
    problems = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.strip().split(maxsplit=1)
            if len(fields) < min_fields:
                problems.append(f"{path}:{n}: expected '<key> <value>', got {line.strip()!r}")
                continue
            key, rest = fields[0], fields[1] if len(fields) > 1 else ""
            if key in table:
                problems.append(f"{path}:{n}: {key} appears twice (the first line is used)")
                continue
            table[key] = rest
    return table, problems


def check_dir(kaldi_dir: Path) -> None:
    if not kaldi_dir.is_dir():
        raise FileNotFoundError(
            f"Kaldi data dir {kaldi_dir} does not exist. Expected one dir per set with "
            "wav.scp (<REC> <audio path or command |>), text (<UTT> <transcript>) and "
            "optionally utt2spk and segments.")
    missing = [str(kaldi_dir / f) for f in REQUIRED if not (kaldi_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"Kaldi data dir {kaldi_dir} is incomplete: missing "
                                f"{', '.join(missing)}")


def _probe_chunk(args):
    items, sample_rate = args
    return [probe_audio(entry, rec_id, sample_rate) for rec_id, entry in items]


def probe_all(entries: dict[str, str], sample_rate: int, num_jobs: int) -> dict[str, tuple]:
    """{rec: (Recording or None, reason or None)} for every wav.scp entry asked for."""
    items = sorted(entries.items())
    results = map_in_chunks(_probe_chunk, items, sample_rate, num_jobs, 200, 100)
    return {rec_id: res for (rec_id, _), res in zip(items, results)}


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    out, name, kdir = args.out_dir, args.name, args.kaldi_dir
    manifests = out / "manifests"
    log = setup_logger(out / "log" / f"import_{name}.log")
    done = manifests / f".{name}.import.done"
    options = f"text_norm={args.text_norm} heldout={args.heldout_speakers}:{args.heldout_name}"
    if done.is_file() and (manifests / f"cuts_{name}.jsonl.gz").is_file() and \
            (args.lm_text is None or args.lm_text.is_file()):
        if done.read_text().strip() in ("", options):  # empty: written before options were
            log.info("%s: manifests exist, skipping (delete %s to redo)", name, done)
            return 0
        log.info("%s: imported with other options (%s, now %s): importing again", name,
                 done.read_text().strip(), options)
    check_dir(kdir)
    normalize = get_normalizer(args.text_norm)

    wav_scp, problems = read_table(kdir / "wav.scp")
    texts, p2 = read_table(kdir / "text", min_fields=1)
    problems += p2
    utt2spk, segments = {}, {}
    if (kdir / "utt2spk").is_file():
        utt2spk, p3 = read_table(kdir / "utt2spk")
        problems += p3
    else:
        log.warning("%s: no utt2spk; speakers are unknown", kdir)
    if (kdir / "segments").is_file():
        segments, p4 = read_table(kdir / "segments")
        problems += p4
    for p in problems:
        log.warning("%s", p)

    excluded: list[Excluded] = []
    # utterance -> (recording id, start, end or None)
    where: dict[str, tuple[str, float, float | None]] = {}
    for utt in texts:
        if segments:
            fields = segments.get(utt, "").split()
            try:
                rec, start, end = fields[0], float(fields[1]), float(fields[2])
                if not 0 <= start < end:
                    raise ValueError
            except (IndexError, ValueError):
                excluded.append(Excluded(utt, str(kdir / "segments"),
                                         "no valid segments line (<UTT> <REC> <start> <end>)"))
                continue
            where[utt] = (rec, start, end)
        else:
            where[utt] = (utt, 0.0, None)
    for utt, (rec, _, _) in list(where.items()):
        if rec not in wav_scp:
            excluded.append(Excluded(utt, str(kdir / "wav.scp"), f"no wav.scp entry for {rec}"))
            del where[utt]

    probed = probe_all({rec: wav_scp[rec] for rec, _, _ in where.values()}, args.sample_rate,
                       args.num_jobs)
    cuts = []
    for utt in sorted(where):
        rec_id, start, end = where[utt]
        rec, reason = probed[rec_id]
        source = wav_scp[rec_id]
        if rec is None:
            excluded.append(Excluded(utt, source, reason))
            continue
        if end is not None and end > rec.duration + 0.02:
            excluded.append(Excluded(utt, source, f"segment {start:.2f}-{end:.2f} s is beyond "
                                     f"the recording ({rec.duration:.2f} s)"))
            continue
        words, reason = normalize(texts[utt])
        if words is None:
            excluded.append(Excluded(utt, source, f"{reason} (transcript {texts[utt]!r})"))
            continue
        duration = None if end is None else min(end, rec.duration) - start
        cuts.append(make_cut(utt, rec, words, speaker=utt2spk.get(utt), start=start,
                             duration=duration, language=args.language))

    referenced = {v.split()[0] for v in segments.values() if v.split()} if segments \
        else set(texts)
    stray = sorted(set(wav_scp) - referenced)
    if stray:
        log.info("%s: %d wav.scp entries have no utterance in text and are not used (e.g. %s)",
                 name, len(stray), stray[0])
    report_excluded(log, name, excluded, len(texts), manifests / f"excluded_{name}.txt")
    if not cuts:
        raise ValueError(f"{kdir}: no usable utterance (see {manifests / f'excluded_{name}.txt'})")
    sets = {name: cuts}
    if args.heldout_speakers > 0:
        sets[name], sets[args.heldout_name] = hold_out(cuts, args.heldout_speakers, kdir)
    for set_name, set_cuts in sets.items():
        write_manifests(set_cuts, manifests, set_name)
        write_lines(out / "text" / f"{set_name}.txt",
                    (f"{c.id}\t{c.supervisions[0].text}" for c in set_cuts))
        hours = sum(c.duration for c in set_cuts) / 3600
        log.info("%s: %d utterances, %.2f h, %d speakers -> %s", set_name, len(set_cuts),
                 hours, len({c.supervisions[0].speaker for c in set_cuts}),
                 manifests / f"cuts_{set_name}.jsonl.gz")
    if args.lm_text is not None:  # the training part's transcripts only
        write_lines(args.lm_text, (c.supervisions[0].text for c in sets[name]))
    done.write_text(options + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
