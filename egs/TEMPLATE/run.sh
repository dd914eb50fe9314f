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

. ../../tools/asr_defaults.sh  # every variable's default and meaning; below, what differs

# Set here what your corpus needs differently from tools/asr_defaults.sh, each with its
# reason, e.g. the set names (defaults: train_set=train dev_set=dev test_sets=test, the
# Kaldi data dirs under $corpus_dir), nj, the LM, the training sizes.
corpus_dir=$CORPUS       # db.sh
text_norm=lower          # stage 0: mandarin | lower | upper | none (local/import_kaldi_dir.py)
unit_type=bpe            # any language (syllable: Mandarin, the paper's units)
heldout_speakers=0       # stage 0: this many training speakers form the set train_dev (left
                         #   out of training and the LM text): a corpus with train and dev only
                         #   validates and tunes on it and scores dev as its test set:
                         #   --heldout-speakers 4 --dev-set train_dev --test-sets dev

help_message="Usage: $0 [options]
  --corpus-dir DIR             a dir with one Kaldi data dir per set (default: \$CORPUS, db.sh)
  --stage N / --stop-stage N   run stages N..M of 0-7 (default 0-6; 7 exports the model)
  --unit-type bpe|syllable     modelling units
  --model NAME                 system to train: conf/model/NAME.yaml
  --tag NAME                   train in exp/<model>_NAME, beside the first (or --exp-dir DIR)
  --force true                 redo stages 4-5 of the range: training from scratch (old files
                               moved aside, not deleted), decoding
  --heldout-speakers N         a corpus with train and dev only: N training speakers become
                               train_dev (with --dev-set train_dev --test-sets dev)
$(asr_options corpus_dir text_norm)"

. ../../tools/parse_options.sh

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
    [ "$s" = train_dev ] && [ "$heldout_speakers" -gt 0 ] && continue  # made from $train_set
    opts=()
    [ "$s" = "$train_set" ] && opts=(--lm-text "$data/text/lm_text.txt"  # train only
                                     --heldout-speakers "$heldout_speakers")
    python ../../local/import_kaldi_dir.py --kaldi-dir "$corpus_dir/$s" --name "$s" \
      --out-dir "$data" --text-norm "$text_norm" --num-jobs "$nj" "${opts[@]}" || exit 1
  done
  # Your own corpus format instead: one script writing $data/manifests/cuts_<set>.jsonl.gz
  # and $data/text/lm_text.txt (see docs/adding-a-corpus.md), e.g.
  #   python ../../local/prepare_mycorpus.py --corpus-dir "$corpus_dir" --out-dir "$data"
fi

. ../../tools/asr_stages.sh
