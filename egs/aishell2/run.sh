#!/usr/bin/env bash
# AISHELL-2 (iOS), the paper's public benchmark: every stage at paper scale.
#
#   ./run.sh --corpus-dir /data/corpora                  # stages 0-6, system moe_4e
#   ./run.sh --stage 4 --model b1                        # train and evaluate another system
#   ./run.sh --stage 0 --stop-stage 0                    # data preparation only
#   ./run.sh --stage 4 --world-size 8                    # train on 8 GPUs (torchrun)
#
# The corpus (licensed: https://www.aishelltech.com/aishell_2) is located by db.sh
# ($AISHELL2) or --corpus-dir: the directory that CONTAINS AISHELL-2/, with the
# iOS train, dev and test sets laid out as lhotse's AISHELL-2 recipe expects:
#
#   <corpus-dir>/AISHELL-2/iOS/data/trans.txt              train transcripts
#   <corpus-dir>/AISHELL-2/iOS/data/wav/<SPK>/<UTT>.wav    e.g. wav/C0001/IC0001W0001.wav
#   <corpus-dir>/AISHELL-2/iOS/dev/trans.txt               dev   (2,500 utterances)
#   <corpus-dir>/AISHELL-2/iOS/dev/wav/<SPK>/<UTT>.wav
#   <corpus-dir>/AISHELL-2/iOS/test/trans.txt              test  (5,000 utterances)
#   <corpus-dir>/AISHELL-2/iOS/test/wav/<SPK>/<UTT>.wav
#
# (the dev and test sets ship as a separate archive: put its iOS/dev and iOS/test
# next to iOS/data). Sets made by stage 0 (local/prepare_aishell2.py):
#   train      iOS train minus the held-out speakers
#   train_dev  --num-dev utterances' worth of held-out training speakers: validation
#              during training and the acoustic-scale choice of WFST decoding
#   dev_ios    AISHELL-2 iOS dev   (the paper's "AISHELL-2 dev" column)   } decoded
#   test_ios   AISHELL-2 iOS test                                          } and scored
# Units: toned syllables + English phones; the word LM is estimated from the train
# transcripts. Stages 1-6 are tools/asr_stages.sh, shared with every recipe.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./db.sh

corpus_dir=$AISHELL2     # the directory that contains AISHELL-2/ (db.sh)
stage=0
stop_stage=6
nj=8

# corpus (stage 0)
num_dev=1500             # held-out training utterances (whole speakers) = train_dev
# stages 1-6 (see tools/asr_stages.sh)
num_rirs=1000
heldout_rirs=0           # no degraded test set here: every RIR may be used for training
rvb_fraction=0.5         # a reverberant copy of this share of train is added (paper 4.2)
# augmentation (tools/asr_stages.sh; the paper's systems use none of it: off by default)
pitch=false              # fbank + 2 pitch features (Kaldi's +pitch), for tonal languages
aug_copies=0             # augmented copies of train added to training (train_aug), each cut drawn:
speed_perturb=0.9,1.0,1.1  # a speed factor (lhotse perturb_speed, as icefall's AISHELL recipes)
tempo_perturb=1.0         # then a tempo factor, pitch kept (WSOLA; 1.0: none)
rvb_prob=0.5             # a training RIR with this probability
noise_prob=0.5           # a noise with this probability, at an SNR (dB) in noise_snr
noise_snr=0,20
noise_dir=""             # noise recordings, e.g. "/data/musan/noise /data/musan/music"
                         # (empty: synthetic babble, music, hum, blue and band-pass noise)
spec_augment=false       # SpecAugment masks on training batches
lm_order=5               # the paper's order; relative-entropy pruning below (egs/synth_mandarin/RESULTS.md)
lm_cutoffs=""
lm_prune=1e-7
open_vocabulary=freq     # every CJK character is a word too, weighted by its frequency in the
                         # transcripts: dev/test words often unseen in them (uniform: the embedded
                         # recipe's choice on its dev set, egs/synth_mandarin/RESULTS.md); off: closed
ctc_topology=compact     # T of TLG: compact (4x faster search, same dev CER) or standard (exact CTC)
model=moe_4e             # conf/model/<model>.yaml: b1 b2 moe_l1 moe_emb moe_4e moe_2e moe_8e
model_overrides='{}'
world_size=1             # training processes on this machine (GPUs); >1 runs torchrun
torchrun_args=""         # multi-node rendezvous (see tools/asr_stages.sh)
num_workers=4            # DataLoader workers per training process
amp=none                 # mixed precision of training: bf16 / fp16 (GPUs) or none
accum_grad=1             # batches accumulated into one update
num_epochs=10
max_duration=300
lr=0.001
warmup_steps=5000
save_every_n=2000
avg=3
beam=16
max_active=7000
acoustic_scales=0.7,1.0,1.4,2.0,2.8

help_message="Usage: $0 [options]
  --corpus-dir DIR             the directory that contains AISHELL-2/ (default: \$AISHELL2 from db.sh)
  --stage N / --stop-stage N   run stages N..M of 0-7 (default 0-6; 7 exports the model)
  --model NAME                 system to train: conf/model/NAME.yaml (default $model)
  --world-size N               train on N GPUs of this machine (torchrun, data-parallel)
  --num-dev N --num-epochs N --nj N ... every variable at the top of run.sh is an option"

. ../../tools/parse_options.sh

data=data
exp=exp
train_set=train
dev_set=train_dev
test_sets="dev_ios test_ios"
degrade_sets=""
lm_text=$data/text/lm_text.txt

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "$(date '+%F %T') [run.sh] Stage 0: AISHELL-2 manifests (lhotse), text normalisation"
  if [ -z "$corpus_dir" ]; then
    echo "run.sh: error: the AISHELL-2 corpus location is not set: set AISHELL2 in" \
      "$(pwd)/db.sh or pass --corpus-dir DIR (the directory that contains AISHELL-2/)." \
      "AISHELL-2 is licensed, not downloadable here: apply for it at" \
      "https://www.aishelltech.com/aishell_2" >&2
    exit 1
  fi
  python ../../local/prepare_aishell2.py --corpus-dir "$corpus_dir" --out-dir "$data" \
    --num-dev "$num_dev" --num-jobs "$nj" || exit 1
fi

. ../../tools/asr_stages.sh
