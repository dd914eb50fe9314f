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

. ../../tools/asr_defaults.sh  # every variable's default and meaning; below, what differs

corpus_dir=$AISHELL2     # the directory that contains AISHELL-2/ (db.sh)
num_dev=1500             # held-out training utterances (whole speakers) = train_dev (stage 0)
dev_set=train_dev        # AISHELL-2 has no development set of its own
test_sets="dev_ios test_ios"
nj=8                     # a server's cores for the 1,000 h of audio
num_rirs=1000            # the paper's scale
# (heldout_rirs=0: no degraded test set here, every RIR may be used for training; rvb_fraction
# 0.5 and no augmentation: the paper's setup)
lm_order=5               # the paper's order; relative-entropy pruning below
lm_prune=1e-7            #   (egs/synth_mandarin/RESULTS.md)
open_vocabulary=freq     # characters weighted by their frequency in the transcripts: dev/test
                         # words often unseen in them (uniform: the embedded recipe's choice on
                         # its dev set, egs/synth_mandarin/RESULTS.md)
# training at the paper's scale, on GPUs
num_workers=4
max_duration=300
warmup_steps=5000
save_every_n=2000

help_message="Usage: $0 [options]
  --corpus-dir DIR             the directory that contains AISHELL-2/ (default: \$AISHELL2 from db.sh)
  --stage N / --stop-stage N   run stages N..M of 0-7 (default 0-6; 7 exports the model)
  --model NAME                 system to train: conf/model/NAME.yaml
  --tag NAME                   train in exp/<model>_NAME, beside the first (or --exp-dir DIR)
  --force true                 redo stages 4-5 of the range: training from scratch (old files
                               moved aside, not deleted), decoding
  --world-size N               train on N GPUs of this machine (torchrun, data-parallel)
$(asr_options corpus_dir num_dev)"

. ../../tools/parse_options.sh

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
