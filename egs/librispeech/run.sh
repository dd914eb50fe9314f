#!/usr/bin/env bash
# LibriSpeech (read English audiobooks, 16 kHz): the paper's systems at paper scale, with
# BPE units, scored by WER.
#
#   ./run.sh --corpus-dir /data/corpora                  # stages 0-6, system moe_4e
#   ./run.sh --train-parts "train-clean-100 train-clean-360 train-other-500"   # 960 h
#   ./run.sh --stage 4 --model b1                        # train and evaluate another system
#   ./run.sh --stage 0 --stop-stage 0                    # data preparation only
#   ./run.sh --stage 4 --world-size 8                    # train on 8 GPUs (torchrun)
#
# The corpus (free, CC BY 4.0: https://www.openslr.org/12; nothing is downloaded here) is
# located by db.sh ($LIBRISPEECH) or --corpus-dir: the directory that CONTAINS
# LibriSpeech/, where the part archives were unpacked (`tar xzf train-clean-100.tar.gz`):
#
#   <corpus-dir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
#   <corpus-dir>/LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
#   <corpus-dir>/librispeech-lm-norm.txt[.gz]      optional: the LM text (openslr.org/11)
#
# for the parts train-clean-100 (or those of --train-parts), dev-clean, dev-other,
# test-clean and test-other. Sets made by stage 0 (local/prepare_librispeech.py; a dev or
# test set is its part with "_" for "-"):
#   train        --train-parts together (default train-clean-100, 100 h)
#   dev_clean    validation during training                         } the WFST acoustic
#   dev_other                                                        } scale is chosen on both
#   test_clean test_other    decoded and scored, and so are both dev sets, as is usual
# Units: sentencepiece BPE trained on the LM text; the word LM: the LibriSpeech LM text
# when it is there (--lm-corpus), else the training transcripts. Stages 1-6 are
# tools/asr_stages.sh, shared with every recipe.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./db.sh

. ../../tools/asr_defaults.sh  # every variable's default and meaning; below, what differs

corpus_dir=$LIBRISPEECH  # the directory that contains LibriSpeech/ (db.sh)
train_parts=train-clean-100  # stage 0: the training parts (+ train-clean-360 train-other-500: 960 h)
text_norm=lower          # stage 0: words in lower case, apostrophes kept (LibriSpeech's text is
                         #   upper case with no other punctuation)
lm_corpus=auto           # stage 0: the LM text: auto (librispeech-lm-norm.txt[.gz] in the corpus
                         #   dir if it is there, else the training transcripts), none (the
                         #   transcripts), or the file's path
lm_max_sentences=1000000  # stage 0: lines taken from the LM corpus (of its about 40M), spread evenly; 0:
                         #   all (stage 3's Kneser-Ney estimation holds its n-grams in memory)
dev_set=dev_clean
tune_sets="dev_clean dev_other"  # the acoustic scale suits clean and harder speech alike
test_sets="dev_clean dev_other test_clean test_other"
nj=8                     # a server's cores for 100-960 h of audio
num_rirs=1000            # the paper's scale
# (rvb_fraction 0.5 and no augmentation: the paper's setup, as egs/aishell2)
unit_type=bpe            # English: sentencepiece pieces, scored by WER. bpe_vocab_size keeps its
                         #   default, 500, icefall's LibriSpeech choice (lang_bpe_500): each piece
                         #   is seen often in 100 h, and a few pieces a second of speech leave
                         #   CTC ample room in the model's 33 output frames a second
lm_prune=1e-7            # as the LibriSpeech release's 3-gram.pruned.1e-7 (openslr.org/11)
# training at the paper's scale, on GPUs
num_workers=4
max_duration=300
warmup_steps=5000
save_every_n=2000

help_message="Usage: $0 [options]
  --corpus-dir DIR             the directory that contains LibriSpeech/ (default: \$LIBRISPEECH
                               from db.sh)
  --train-parts 'P ...'        training parts: train-clean-100 train-clean-360 train-other-500
  --lm-corpus auto|none|FILE   the LM text: librispeech-lm-norm.txt or the training transcripts
  --stage N / --stop-stage N   run stages N..M of 0-7 (default 0-6; 7 exports the model)
  --model NAME                 system to train: conf/model/NAME.yaml
  --tag NAME                   train in exp/<model>_NAME, beside the first (or --exp-dir DIR)
  --force true                 redo stages 4-5 of the range: training from scratch (old files
                               moved aside, not deleted), decoding
  --world-size N               train on N GPUs of this machine (torchrun, data-parallel)
$(asr_options corpus_dir train_parts text_norm lm_corpus lm_max_sentences)"

. ../../tools/parse_options.sh

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "$(date '+%F %T') [run.sh] Stage 0: LibriSpeech manifests (lhotse), bad files left out, LM text"
  if [ -z "$corpus_dir" ]; then
    echo "run.sh: error: the LibriSpeech corpus location is not set: set LIBRISPEECH in" \
      "$(pwd)/db.sh or pass --corpus-dir DIR (the directory that contains LibriSpeech/)." \
      "LibriSpeech is free at https://www.openslr.org/12: download the parts" \
      "($train_parts, dev-clean, dev-other, test-clean, test-other) and unpack them there;" \
      "the recipe downloads nothing" >&2
    exit 1
  fi
  # every set stage 0 must make besides the training set: a dev or test part each
  # shellcheck disable=SC2086
  eval_sets=$(echo $dev_set $tune_sets $test_sets | tr ' ' '\n' | awk '!seen[$0]++' | xargs)
  # shellcheck disable=SC2086
  python ../../local/prepare_librispeech.py --corpus-dir "$corpus_dir" --out-dir "$data" \
    --train-parts $train_parts --train-set "$train_set" --eval-sets $eval_sets \
    --text-norm "$text_norm" --lm-corpus "$lm_corpus" --lm-max-sentences "$lm_max_sentences" \
    --num-jobs "$nj" || exit 1
fi

. ../../tools/asr_stages.sh
