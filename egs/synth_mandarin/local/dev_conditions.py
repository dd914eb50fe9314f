#!/usr/bin/env python3
"""Which condition of test_spon costs most? The trained model's CTC greedy toned-syllable
error rate on variants of dev made from dev material and training material only:

    ../../.venv/bin/python local/dev_conditions.py exp/moe_4e /tmp/dev_conditions

  dev                      as is
  dev_fast                 the dev sentences and voices re-synthesized at test_spon's
                           speeds (220-270 words per minute; training: 140-200)
  dev_noise5-20            + a training noise (never test_spon's kinds) at 5-20 dB
  dev_rvb                  + a training RIR (never test_spon's rooms)
  dev_rvb_noise5-20, dev_fast_rvb_noise5-20   the combinations
After stage 4; writes audio and features under the second argument. The model directory
and that output are taken as given (relative to where you are); the recipe's data
(features, lang dir, manifests, RIRs, noise) is read from --data-dir, by default this
recipe's data/ wherever the script is run from.
"""
import argparse, random, json, time
from pathlib import Path
import torch
from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment
from speechmoe.data.augment import augmented_copy
from speechmoe.data.fbank import compute_fbank
from speechmoe.data.synth import SynthJob, synthesize
from speechmoe.decode.posteriors import posteriors
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.checkpoint import checkpoint_for_decoding
from speechmoe.inference import load_model_for_inference
from speechmoe.lang.symbols import read_tokens
from speechmoe.lang.tokenizer import make_tokenizer
from speechmoe.data.dataset import cut_words
from speechmoe.scoring import score

RECIPE = Path(__file__).resolve().parents[1]  # egs/synth_mandarin
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("exp", type=Path, help="the trained model's directory, e.g. exp/moe_4e")
p.add_argument("out", type=Path, help="where the variants' audio and features go")
p.add_argument("--data-dir", type=Path, default=RECIPE / "data",
               help="the recipe's data dir (default: %(default)s)")
args = p.parse_args()
exp, out, data = args.exp, args.out, args.data_dir
torch.set_num_threads(2)
cmvn = data / "fbank" / "cmvn.pt"
cfg = FeatureConfig.for_cmvn(cmvn)
model, _ = load_model_for_inference(checkpoint_for_decoding(exp, 0, 2))
id2tok = {i: t for t, i in read_tokens(data / "lang" / "tokens.txt").items()}
tok = make_tokenizer(data / "lang")
dev_raw = CutSet.from_file(data / "manifests" / "cuts_dev.jsonl.gz").to_eager()
rirs = list(RecordingSet.from_file(data / "rir" / "rirs_train.jsonl.gz"))
noises = list(RecordingSet.from_file(data / "rir" / "noise_train.jsonl.gz"))
rng = random.Random(5)
# fast speech: the dev sentences, their (training) voices, at test_spon's speeds
jobs = []
for c in dev_raw:
    sup = c.supervisions[0]
    jobs.append(SynthJob(c.id + "_fast", sup.custom["pinyin"], sup.speaker if sup.speaker != "default" else "",
                         rng.randint(220, 270), sup.custom["pitch"], out / "wav" / f"{c.id}_fast.wav"))
synthesize(jobs, num_jobs=2)
fast = []
for c, j in zip(dev_raw, jobs):
    rec = Recording.from_file(j.wav, recording_id=j.utt_id)
    sup = c.supervisions[0]
    fast.append(MonoCut(j.utt_id, 0, rec.duration, 0, recording=rec, supervisions=[
        SupervisionSegment(j.utt_id, j.utt_id, 0, rec.duration, 0, text=sup.text)]))
fast = CutSet.from_cuts(fast)
variants = {
    "dev": dev_raw,
    "dev_fast": fast,
    "dev_noise5-20": augmented_copy(dev_raw, [1.0], noises=noises, noise_prob=1.0, snr_range=(5, 20), seed=1)[0],
    "dev_rvb": augmented_copy(dev_raw, [1.0], rirs, 1.0, seed=2)[0],
    "dev_rvb_noise5-20": augmented_copy(dev_raw, [1.0], rirs, 1.0, noises, 1.0, (5, 20), seed=3)[0],
    "dev_fast_rvb_noise5-20": augmented_copy(fast, [1.0], rirs, 1.0, noises, 1.0, (5, 20), seed=4)[0],
}
res = {}
for name, cuts in variants.items():
    t0 = time.time()
    feats, bad = compute_fbank(cuts, out / "fbank", name, 2, cfg)
    feats = feats.to_eager()
    refs, hyps = {}, {}
    for cid, lp in posteriors(model, feats, GlobalCMVN.load(cmvn), 120, feature_config=cfg):
        hyps[cid] = [id2tok[t] for t in ctc_greedy(lp)[0]]
        refs[cid] = tok.units(cut_words(feats[cid]))
    st = score(refs, hyps)
    res[name] = round(st.rate, 2)
    print(name, res[name], f"{time.time()-t0:.0f}s", flush=True)
print(json.dumps(res))
