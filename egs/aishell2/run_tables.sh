#!/usr/bin/env bash
# The paper's Tables 1-3 and Figure 2 at the paper's scale (GPUs): the 7 paper-scale systems
# (conf/model/) x seeds on AISHELL-2, with the published numbers beside ours. The paper's
# AISHELL column is AISHELL-2's dev set (iOS channel): our dev_ios.
#
#   ./run.sh --stop-stage 3                       # data, features, lang dir (once)
#   ./run_tables.sh --world-size 8                # every run, data-parallel on 8 GPUs
#   ./run_tables.sh --report-only true            # the report from tables/runs/
#
# The logic is shared with egs/synth_mandarin (local/tables.py, speechmoe/tables/); this
# file only sets the scale. Resumable: finished runs are skipped.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

systems=""               # empty: local/tables.py's default, the paper's 7 (speechmoe/tables/)
seeds="1 2 3"
report_only=false
world_size=1             # GPUs per run (torchrun); 1: one process
nj=8
tables_dir=tables
exp=exp/tables
train_utts=0             # all of train
num_epochs=10
max_duration=300
lr=0.001
warmup_steps=5000
normalization=utterance  # the authors' convention (tencent-ailab/3m-asr); see TABLES.md
train_options="--num-workers 4"  # e.g. add "--amp bf16" on GPUs that have it
avg=3
acoustic_scales=0.7,1.0,1.4,2.0
beam=16
max_active=7000

. ../../tools/parse_options.sh

launcher=""
[ "$world_size" -gt 1 ] && launcher="torchrun --standalone --nproc-per-node $world_size"
report=""
$report_only && report="--report-only"
train_sets=train
[ -f data/fbank/cuts_train_rvb.jsonl.gz ] && train_sets="$train_sets train_rvb"
[ -f data/fbank/cuts_train_aug.jsonl.gz ] && train_sets="$train_sets train_aug"
# shellcheck disable=SC2086
python ../../local/tables.py --tables-dir "$tables_dir" --exp-dir "$exp" --conf-dir conf/model \
  --lang-dir data/lang --cmvn data/fbank/cmvn.pt --cuts-dir data/fbank \
  --train-sets $train_sets --dev-set train_dev --test-sets dev_ios test_ios \
  --paper-columns '{"dev_ios": "AISHELL", "test_ios": null}' \
  ${systems:+--systems $systems} --seeds $seeds --train-utts "$train_utts" \
  --normalization "$normalization" \
  --num-epochs "$num_epochs" --max-duration "$max_duration" --lr "$lr" \
  --warmup-steps "$warmup_steps" "--train-options=$train_options" "--launcher=$launcher" \
  --avg "$avg" --acoustic-scales "$acoustic_scales" --beam "$beam" --max-active "$max_active" \
  --nj "$nj" $report
