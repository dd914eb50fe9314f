#!/usr/bin/env python3
"""What the voice space alone buys (issue 35, item 3): the corpus version 1 default model
(14 espeak-ng voices) against the version 2 default model (400 drawn speakers), on
utterances neither trained on, in voices neither heard.

    cd egs/synth_mandarin
    python results/voices/voice_space.py --v1-exp V1/exp/moe_4e --v1-data V1/data \\
        --v2-exp exp/moe_4e --data data --work exp/voice_space --out results/voices/<name>

V1 is a checkout of corpus version 1 (for example `git worktree add ../v1 3a30664`) whose
`./run.sh` has run stages 0-6.

The set, `unseen_voices`: dev's 300 sentences, which neither version's training text nor
its LM text holds, each read by the dev_unseen speaker (with that row's speaking rate and
pitch setting) of the dev_unseen row of the same index. dev_unseen's own sentences cannot
serve: version 1 trained on every one of them (version 2 took them from version 1's
training text), which the script counts and reports.

Each model decodes with its own lang dir (lexicon, LM, TLG), its own CMVN and the acoustic
scale its own stage 5 chose, with the recipe's beam 16 and 7,000 active states, from the
model stage 5 decoded (avg-4-2.pt). Measured: WFST CER and greedy toned-syllable error
rate on `unseen_voices`, and on version 2's dev_unseen (where version 1 is favoured by
having trained on the sentences); for each, the ratio version 2 / version 1 with a 95%
paired bootstrap interval over speakers (2,000 resamples).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path

from speechmoe.data.corpus import read_tsv

SET = "unseen_voices"
LOCAL = Path(__file__).resolve().parents[4] / "local"


def sentences(path: Path, column: int = 1) -> set[str]:
    """A text file's sentences without their word boundaries (a sentence split into words
    otherwise would escape the comparison)."""
    if path.suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = [r[column] for r in read_tsv(path)]
    return {"".join(line.split()) for line in lines}


def build_rows(data: Path, v1_data: Path) -> tuple[list[list[str]], dict]:
    """The set's text rows and the checks that make it fair to both models."""
    dev, unseen = read_tsv(data / "text" / "dev.tsv"), read_tsv(data / "text" / "dev_unseen.tsv")
    if len(dev) != len(unseen):
        raise ValueError(f"dev has {len(dev)} rows, dev_unseen {len(unseen)}: the set pairs "
                         "them row by row")
    rows = [[f"{SET}-{i:06d}", d[1], d[2], u[3], u[4], u[5], d[6]]
            for i, (d, u) in enumerate(zip(dev, unseen))]
    text = {"".join(r[1].split()) for r in rows}
    checks = {}
    for name, path in (("v1_train", v1_data / "text" / "train.tsv"),
                       ("v1_lm_text", v1_data / "text" / "lm_text.txt"),
                       ("v2_train", data / "text" / "train.tsv"),
                       ("v2_lm_text", data / "text" / "lm_text.txt")):
        checks[f"sentences_in_{name}"] = len(text & sentences(path))
    speakers = {r[3] for r in rows}
    checks["speakers"] = len(speakers)
    checks["speakers_in_v2_train"] = len(speakers & {r[3] for r in
                                                      read_tsv(data / "text" / "train.tsv")})
    checks["speakers_in_v1_train"] = len(speakers & {r[3] for r in
                                                      read_tsv(v1_data / "text" / "train.tsv")})
    bad = {k: v for k, v in checks.items() if k.startswith(("sentences_in", "speakers_in")) and v}
    if bad:
        raise ValueError(f"{SET} would not be unseen by both models: {bad}")
    v1_train = sentences(v1_data / "text" / "train.tsv")
    checks["dev_unseen_sentences_in_v1_train"] = len({"".join(r[1].split()) for r in unseen}
                                                     & v1_train)
    return rows, checks


def load_prepare():
    spec = importlib.util.spec_from_file_location("prepare_synth_mandarin",
                                                  LOCAL / "prepare_synth_mandarin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_features(rows, data: Path, work: Path, log) -> Path:
    """Synthesize the set with the corpus's own voices, then fbank + pitch as stage 2
    computes them (data/fbank/features.json). Returns the cuts file (made once)."""
    from lhotse import CutSet

    from speechmoe.data.fbank import compute_fbank
    from speechmoe.data.voices import espeak_data_dirs, load_voices
    from speechmoe.features import FeatureConfig

    out = work / "fbank" / f"cuts_{SET}.jsonl.gz"
    if out.is_file():
        log.info("%s exists, kept", out)
        return out
    prep = load_prepare()
    text_dir = work / "data" / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    (text_dir / f"{SET}.tsv").write_text("".join("\t".join(r) + "\n" for r in rows),
                                         encoding="utf-8")
    voices = load_voices(data / "text" / "voices.json")
    used = {r[3] for r in rows}
    if used - voices.keys():
        raise ValueError(f"{data / 'text' / 'voices.json'}: no voice for speakers "
                         f"{sorted(used - voices.keys())[:5]}")
    voices = {k: v for k, v in voices.items() if k in used}
    espeak = espeak_data_dirs(voices.values(), work / "data" / "espeak")
    prep.make_set(work / "data", SET, voices, espeak, 2, log)
    cfg = FeatureConfig.for_cmvn(data / "fbank" / "cmvn.pt")
    cuts = CutSet.from_file(work / "data" / "manifests" / f"cuts_{SET}.jsonl.gz")
    with_feats, bad = compute_fbank(cuts, work / "fbank", SET, num_jobs=2, config=cfg)
    if bad:
        raise RuntimeError(f"{SET}: features failed for {len(bad)} utterances, e.g. {bad[0]}")
    shutil.copy(data / "fbank" / "features.json", work / "fbank" / "features.json")
    with_feats.to_file(out)
    return out


def decode_model(name: str, exp: Path, lang: Path, cmvn_path: Path, sets: dict, set_cfg,
                 out: Path, log) -> dict:
    """Greedy toned syllables and WFST CER of one model on every set (utt_errors.tsv under
    out/<name>/<method>/<set>/)."""
    from speechmoe.checkpoint import checkpoint_for_decoding
    from speechmoe.data.dataset import cut_words
    from speechmoe.decode.greedy import ctc_greedy
    from speechmoe.decode.posteriors import posteriors
    from speechmoe.decode.wfst import WfstDecoder
    from speechmoe.expdir import ExpDir
    from speechmoe.features import FeatureConfig, GlobalCMVN
    from speechmoe.inference import load_model_for_inference
    from speechmoe.lang.symbols import read_tokens
    from speechmoe.lang.tokenizer import make_tokenizer, read_lang_info, scoring_tokens
    from speechmoe.scoring import score

    ckpt = checkpoint_for_decoding(exp, 0, 2)
    scale = ExpDir(exp).decode_dir(ckpt).tuned_scale()
    if scale is None:
        raise FileNotFoundError(f"{exp}: no acoustic scale chosen by stage 5 for {ckpt.name}")
    cfg = FeatureConfig.for_cmvn(cmvn_path)
    if cfg != set_cfg:
        raise ValueError(f"{cmvn_path}: the model's features {cfg} differ from the sets' "
                         f"{set_cfg}")
    model, system = load_model_for_inference(ckpt)
    cmvn = GlobalCMVN.load(cmvn_path)
    tok = make_tokenizer(lang)
    id2tok = {i: t for t, i in read_tokens(lang / "tokens.txt").items()}
    metric = read_lang_info(lang)["metric"]
    decoder = WfstDecoder(lang / "TLG.fst", lang / "words.txt", beam=16.0, max_active=7000,
                          acoustic_scale=scale)
    result = {"checkpoint": str(ckpt), "acoustic_scale": scale, "lang": str(lang),
              "cmvn": str(cmvn_path), "sets": {}}
    for set_name, cuts in sets.items():
        t0 = time.time()
        words = {c.id: cut_words(c) for c in cuts}
        greedy, wfst = {}, {}
        for cut_id, lp in posteriors(model, cuts, cmvn, 120.0, feature_config=cfg):
            greedy[cut_id] = [id2tok[t] for t in ctc_greedy(lp)[0]]
            wfst[cut_id] = scoring_tokens(decoder.decode(lp), metric)
        g = score({u: tok.units(w) for u, w in words.items()}, greedy,
                  out / name / "ctc_greedy" / set_name, f"{name} {set_name} greedy")
        w = score({u: scoring_tokens(ws, metric) for u, ws in words.items()}, wfst,
                  out / name / "wfst" / set_name, f"{name} {set_name} WFST")
        result["sets"][set_name] = {"greedy_toned_syllable_er": round(g.rate, 2),
                                    f"wfst_{metric.lower()}": round(w.rate, 2),
                                    "utterances": w.utts, "ref_tokens": w.ref_len,
                                    "ref_syllables": g.ref_len}
        log.info("%s on %s: greedy toned-syllable ER %.2f%%, WFST %s %.2f%% (%d utterances, "
                 "%.0f s)", name, set_name, g.rate, metric, w.rate, w.utts, time.time() - t0)
    return result


def paired_speaker_ratio(out: Path, set_name: str, method: str, speaker_of: dict,
                         resamples: int = 2000, seed: int = 1) -> dict:
    """v2 / v1 pooled error rate, with a 95% bootstrap interval over speakers (the same
    resampled speakers for both models)."""
    from speechmoe.scoring import read_utt_errors

    per = {}
    for model in ("v1", "v2"):
        counts: dict[str, list[int]] = {}
        for utt, errors, ref in read_utt_errors(out / model / method / set_name /
                                                "utt_errors.tsv"):
            c = counts.setdefault(speaker_of[utt], [0, 0])
            c[0] += errors
            c[1] += ref
        per[model] = counts
    speakers = sorted(per["v1"])
    if not speakers or sorted(per["v2"]) != speakers:
        raise ValueError(f"{set_name} {method}: the two models' speakers differ or are none")

    def ratio(sample):
        e1 = sum(per["v1"][s][0] for s in sample)
        e2 = sum(per["v2"][s][0] for s in sample)
        r1 = sum(per["v1"][s][1] for s in sample)
        r2 = sum(per["v2"][s][1] for s in sample)
        return (e2 / r2) / (e1 / r1) if e1 else float("inf")

    rng = random.Random(seed)
    draws = sorted(ratio([rng.choice(speakers) for _ in speakers]) for _ in range(resamples))
    return {"ratio_v2_over_v1": round(ratio(speakers), 3),
            "ci95": [round(draws[int(0.025 * resamples)], 3),
                     round(draws[int(0.975 * resamples) - 1], 3)],
            "speakers": len(speakers), "resamples": resamples}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--v1-exp", type=Path, required=True)
    p.add_argument("--v1-data", type=Path, required=True)
    p.add_argument("--v2-exp", type=Path, default=Path("exp/moe_4e"))
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--work", type=Path, default=Path("exp/voice_space"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    for path in (args.v1_exp, args.v1_data / "text", args.v2_exp, args.data / "text"):
        if not path.exists():
            print(f"voice_space.py: {path}: not found", file=sys.stderr)
            return 1
    import torch
    from lhotse import CutSet

    from speechmoe.features import FeatureConfig
    from speechmoe.logs import setup_logger

    torch.set_num_threads(2)
    log = setup_logger(args.work / "log" / "voice_space.log")
    rows, checks = build_rows(args.data, args.v1_data)
    log.info("%s: %d rows; checks %s", SET, len(rows), checks)
    cuts_file = make_features(rows, args.data, args.work, log)
    set_cfg = FeatureConfig.for_cmvn(args.data / "fbank" / "cmvn.pt")
    sets = {SET: CutSet.from_file(cuts_file).to_eager(),
            "dev_unseen": CutSet.from_file(args.data / "fbank" /
                                           "cuts_dev_unseen.jsonl.gz").to_eager()}
    speaker_of = {c.id: c.supervisions[0].speaker for s in sets.values() for c in s}
    args.out.mkdir(parents=True, exist_ok=True)
    decodes = args.work / "decode"
    models = {
        "v1": decode_model("v1", args.v1_exp, args.v1_data / "lang",
                           args.v1_data / "fbank" / "cmvn.pt", sets, set_cfg, decodes, log),
        "v2": decode_model("v2", args.v2_exp, args.data / "lang",
                           args.data / "fbank" / "cmvn.pt", sets, set_cfg, decodes, log)}
    ratios = {s: {m: paired_speaker_ratio(decodes, s, m, speaker_of)
                  for m in ("wfst", "ctc_greedy")} for s in sets}
    summary = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
               "set": SET, "checks": checks, "models": models, "ratios": ratios}
    (args.out / "voice_space.json").write_text(json.dumps(summary, indent=1) + "\n")
    for model in ("v1", "v2"):
        for s in sets:
            for method in ("wfst", "ctc_greedy"):
                src = decodes / model / method / s / "utt_errors.tsv"
                dst = args.out / "utt_errors" / f"{model}_{method}_{s}.tsv"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
    print(json.dumps({"models": {m: r["sets"] for m, r in models.items()}, "ratios": ratios},
                     indent=1))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
