#!/usr/bin/env python3
"""Tone errors of CTC greedy on dev by context: is 3-3 tone sandhi learnt?

    ../../.venv/bin/python local/tone_errors.py exp/moe_4e

For each citation tone, the share of dev syllables (whose toneless base the model got
right) recognised with another tone, before a tone-3 syllable and elsewhere. espeak-ng
speaks a tone 3 before a tone 3 as tone 2; the labels keep the citation tone.
"""
import collections, sys
import torch
from pathlib import Path
from lhotse import CutSet
from speechmoe.decode.posteriors import posteriors
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.inference import checkpoint_for_decoding, load_model_for_inference
from speechmoe.lang.graph import read_tokens
from speechmoe.lang.tokenizer import make_tokenizer
from speechmoe.data.dataset import cut_words
from speechmoe.scoring import align
exp = sys.argv[1]
torch.set_num_threads(2)
model, _ = load_model_for_inference(checkpoint_for_decoding(Path(exp), 0, 2))
cuts = CutSet.from_file('data/fbank/cuts_dev.jsonl.gz').to_eager()
cmvn = 'data/fbank/cmvn.pt'
id2tok = {i: t for t, i in read_tokens('data/lang/tokens.txt').items()}
tok = make_tokenizer('data/lang')
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
