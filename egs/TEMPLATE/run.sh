#!/usr/bin/env bash
# TEMPLATE recipe: copy this directory to egs/<corpus>/ and follow egs/TEMPLATE/README.md
# (docs/adding-a-corpus.md explains every choice). As shipped it reads a corpus in Kaldi
# data-dir layout and trains BPE units:
#
#   <corpus-dir>/train/{wav.scp,text,utt2spk[,segments]}    training set
#   <corpus-dir>/dev/{...}                                  validation + acoustic-scale tuning
#   <corpus-dir>/test/{...}                                 decoded and scored (one dir per set)
#
#   ./run.sh --corpus-dir /data/mycorpus                    # stages 0-6
#   ./run.sh --stage 3 --unit-type syllable --text-norm mandarin   (a Mandarin corpus)
#
# Stage 0 (here) turns the corpus into lhotse manifests and the LM text; stages 1-6
# are tools/asr_stages.sh, shared with every recipe.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./db.sh

corpus_dir=$CORPUS       # db.sh
stage=0
stop_stage=6
nj=2

# corpus (stage 0): set names are the Kaldi data dirs under $corpus_dir
train_set=train
dev_set=dev
test_sets="test"
text_norm=lower          # mandarin | lower | upper | none (local/import_kaldi_dir.py)
# units and LM (stage 3)
unit_type=bpe            # bpe (any language) | syllable (Mandarin, the paper's units)
bpe_vocab_size=500
lm_order=3
lm_cutoffs=""
lm_prune=0
open_vocabulary=uniform  # every CJK character is a word too (lexicon + LM); off: LM-text words only
ctc_topology=compact     # T of TLG: compact (4x faster search, same dev CER) or standard (exact CTC)
# stages 1, 2, 4-6 (see tools/asr_stages.sh)
num_rirs=200
heldout_rirs=0
rvb_fraction=0.5
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
model=moe_4e             # conf/model/<model>.yaml (copy them in: see README.md)
model_overrides='{}'
world_size=1             # training processes on this machine (GPUs); >1 runs torchrun
torchrun_args=""         # multi-node rendezvous (see tools/asr_stages.sh)
num_workers=1            # DataLoader workers of training (0: in the main process)
num_epochs=10
max_duration=200
lr=0.001
warmup_steps=1000
save_every_n=1000
amp=none                 # mixed precision of training: bf16 / fp16 (GPUs) or none
accum_grad=1             # batches accumulated into one update
avg=3
beam=16
max_active=7000
acoustic_scales=0.7,1.0,1.4,2.0,2.8

help_message="Usage: $0 [options]
  --corpus-dir DIR             a dir with one Kaldi data dir per set (default: \$CORPUS, db.sh)
  --stage N / --stop-stage N   run stages N..M of 0-7 (default 0-6; 7 exports the model)
  --unit-type bpe|syllable     modelling units (default $unit_type)
  --model NAME                 system to train: conf/model/NAME.yaml (default $model)
  every variable at the top of run.sh is an option"

. ../../tools/parse_options.sh

data=data
exp=exp
degrade_sets=""
lm_text=$data/text/lm_text.txt

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ ! -f "conf/model/$model.yaml" ]; then
  echo "run.sh: error: conf/model/$model.yaml not found: copy the model configs of the scale" \
    "you want, paper scale: cp ../aishell2/conf/model/*.yaml conf/model/ ; CPU scale:" \
    "cp ../synth_mandarin/conf/model/*.yaml conf/model/" >&2
  exit 1
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "$(date '+%F %T') [run.sh] Stage 0: Kaldi data dirs -> lhotse manifests, LM text"
  if [ -z "$corpus_dir" ]; then
    echo "run.sh: error: the corpus location is not set: set CORPUS in $(pwd)/db.sh or" \
      "pass --corpus-dir DIR (a dir with $train_set/ $dev_set/ $test_sets/ Kaldi data dirs)" >&2
    exit 1
  fi
  for s in $train_set $dev_set $test_sets; do
    lm_opt=()
    [ "$s" = "$train_set" ] && lm_opt=(--lm-text "$lm_text")  # the LM learns from train only
    python ../../local/import_kaldi_dir.py --kaldi-dir "$corpus_dir/$s" --name "$s" \
      --out-dir "$data" --text-norm "$text_norm" --num-jobs "$nj" "${lm_opt[@]}" || exit 1
  done
  # Your own corpus format instead: one script writing $data/manifests/cuts_<set>.jsonl.gz
  # and $lm_text (see docs/adding-a-corpus.md), e.g.
  #   python ../../local/prepare_mycorpus.py --corpus-dir "$corpus_dir" --out-dir "$data"
fi

. ../../tools/asr_stages.sh
