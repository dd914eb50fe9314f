#!/usr/bin/env bash
# The paper's Tables 1-3 and Figure 2 at CPU scale: the 7 systems x 3 seeds, each trained,
# decoded and scored on the embedded corpus, then TABLES.md, tables.json and the figures.
#
#   ./run.sh --stop-stage 3          # the data, features and lang dir (once)
#   ./run_tables.sh                  # every run (~3 h on 2 cores), then the report
#   ./run_tables.sh --report-only true   # the report from the committed tables/runs/
#   ./run_tables.sh --tiny true      # toy sizes (the test suite; needs ./run.sh --tiny true)
#   ./run_tables.sh --dev-only true --tables-dir DIR --exp DIR/exp --systems "b1 moe_8e v" \
#       --variants '{"v": {"base": "moe_8e", "loss": {"z_loss": 0.001}}}'
#                                    # train only, compare on dev: DIR/DEV.md (choose on dev)
#
# Resumable: finished runs (tables/runs/<system>/seed<k>.json) are skipped, an interrupted
# one continues from its last checkpoint. Commit tables/ after each session.
# Every system gets the same data, epochs, schedule and options, chosen once on dev.
# Each run records them (and the CTC topology of data/lang's TLG); a finished run made with
# others stops the command. The committed runs in tables/runs/ decoded through the standard
# topology: to add to them, build the lang dir with ./run.sh --stop-stage 3 --ctc-topology standard.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

systems=""               # empty: local/tables.py's default, the paper's 7 (speechmoe/tables/)
seeds="1 2 3"
tiny=false
report_only=false
dev_only=false           # true: train, keep the dev measurements, no decoding (choose on dev)
reference_system=b1      # --dev-only: whose seed spread the others are compared to
nj=2
tables_dir=tables
exp=exp/tables
train_utts=2400          # of train, with their train_aug copies: 3.5 h (0: all)
train_cuts_dir=data/fbank  # where train and train_aug are (dev and tests: data/fbank)
test_sets="test_read test_chat test_spon"  # decoded and scored (the tables: these three)
num_epochs=4
max_duration=60           # seconds of audio per batch (~210 steps per epoch)
lr=0.002
warmup_steps=150
normalization=utterance  # the authors' convention (tencent-ailab/3m-asr); see TABLES.md
model_overrides='{"d_model": 128, "ffn_dim": 256, "attention_ffn_dim": 256}'  # every system
avg=2
acoustic_scales=1.0,1.4,2.0,2.8
beam=12
max_active=3000
routing_system=moe_8e
train_options=""         # more local/train.py options, the same for every run
variants='{}'            # more systems: a config of conf/model with overrides (local/tables.py)

for arg in "$@"; do [ "$arg" = "--tiny=true" ] && tiny=true; done
for ((i = 1; i < $#; i++)); do
  j=$((i + 1)); [ "${!i}" = "--tiny" ] && [ "${!j}" = "true" ] && tiny=true
done
if $tiny; then
  systems="b1 moe_2e"; seeds="1 2"; tables_dir=exp/tables_tiny/tables; exp=exp/tables_tiny
  train_utts=100; num_epochs=2; max_duration=60; lr=0.003; warmup_steps=20; avg=1
  routing_system=moe_2e; train_options="--log-interval 2"  # routing records of short runs
  model_overrides='{"d_model": 32, "ffn_dim": 64, "attention_ffn_dim": 64, "attention_heads": 2}'
  acoustic_scales=1.0; beam=10; max_active=1000
fi

. ../../tools/parse_options.sh

report=""
$report_only && report="--report-only"
$dev_only && report="$report --dev-only"
# none in a fresh clone, where --report-only needs no data
train_sets=$(ls "$train_cuts_dir"/cuts_train.jsonl.gz "$train_cuts_dir"/cuts_train_aug.jsonl.gz 2>/dev/null \
             | sed 's|.*/cuts_||; s|\.jsonl\.gz||' || true)
# shellcheck disable=SC2086
python ../../local/tables.py --tables-dir "$tables_dir" --exp-dir "$exp" --conf-dir conf/model \
  --lang-dir data/lang --cmvn data/fbank/cmvn.pt --cuts-dir data/fbank \
  $([ "$train_cuts_dir" = data/fbank ] || echo "--train-cuts-dir $train_cuts_dir") \
  ${train_sets:+--train-sets $train_sets} \
  --dev-set dev_unseen --test-sets $test_sets \
  ${systems:+--systems $systems} --seeds $seeds --train-utts "$train_utts" \
  --normalization "$normalization" \
  --model-overrides "$model_overrides" --num-epochs "$num_epochs" --max-duration "$max_duration" \
  --lr "$lr" --warmup-steps "$warmup_steps" --avg "$avg" --acoustic-scales "$acoustic_scales" \
  --beam "$beam" --max-active "$max_active" --nj "$nj" --routing-system "$routing_system" \
  "--train-options=$train_options" --variants "$variants" \
  --reference-system "$reference_system" $report
