#!/usr/bin/env python3
"""Tone errors of CTC greedy on dev by context: is 3-3 tone sandhi learnt?

    ../../.venv/bin/python local/tone_errors.py exp/moe_4e

For each citation tone, the share of dev syllables (whose toneless base the model got
right) recognised with another tone, before a tone-3 syllable and elsewhere. espeak-ng
speaks a tone 3 before a tone 3 as tone 2; the labels keep the citation tone.
The model directory is taken as given (relative to where you are); dev's features and the
lang dir are read from --data-dir, by default this recipe's data/ wherever the script is run.
"""
import argparse, collections
import torch
from pathlib import Path
from lhotse import CutSet
from speechmoe.decode.posteriors import posteriors
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.checkpoint import checkpoint_for_decoding
from speechmoe.inference import load_model_for_inference
from speechmoe.lang.symbols import read_tokens
from speechmoe.lang.tokenizer import make_tokenizer
from speechmoe.data.dataset import cut_words
from speechmoe.scoring import align
RECIPE = Path(__file__).resolve().parents[1]  # egs/synth_mandarin
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("exp", type=Path, help="the trained model's directory, e.g. exp/moe_4e")
p.add_argument("--data-dir", type=Path, default=RECIPE / "data",
               help="the recipe's data dir (default: %(default)s)")
args = p.parse_args()
data = args.data_dir
torch.set_num_threads(2)
model, _ = load_model_for_inference(checkpoint_for_decoding(args.exp, 0, 2))
cuts = CutSet.from_file(data / "fbank" / "cuts_dev.jsonl.gz").to_eager()
cmvn = data / "fbank" / "cmvn.pt"
id2tok = {i: t for t, i in read_tokens(data / "lang" / "tokens.txt").items()}
tok = make_tokenizer(data / "lang")
ctx = collections.Counter(); tot = collections.Counter()
for cid, lp in posteriors(model, cuts, GlobalCMVN.load(cmvn), 120, feature_config=FeatureConfig.for_cmvn(cmvn)):
    hyp = [id2tok[t] for t in ctc_greedy(lp)[0]]
    ref = tok.units(cut_words(cuts[cid]))
    pairs = align(ref, hyp)
    refs = [r for r, _ in pairs if r != '*']
    k = 0
    for r, h in pairs:
        if r == '*':
            continue
        nxt = refs[k + 1][-1] if k + 1 < len(refs) else 'E'
        k += 1
        if h == '*' or r[:-1] != h[:-1] or not r[-1].isdigit():
            continue
        key = (r[-1], '3' if nxt == '3' else 'other')
        tot[key] += 1
        ctx[key] += r != h
for key in sorted(tot):
    print(key, f'{100 * ctx[key] / tot[key]:.1f}% of {tot[key]}')
