#!/usr/bin/env bash
# Where SpeechMoE's gain appears: B1, MoE-8e (its routing frozen from update 250, the
# stabiliser results/stability chose on dev) and a dense 8-layer model at three amounts of
# distinct training audio, every run the same budget of updates, decoded and scored as the
# tables are; then results/scaling/SCALING.md, scaling.json and the figure.
#
#   ./run.sh --stop-stage 3                       # data/: the tables' corpus (once)
#   ./run.sh --data data_x4 --num-train 48000 --stop-stage 2   # 4x the training text
#                                                 # (size 70h only; dev and tests: data/)
#   ./run_scaling.sh                              # every run, then the report
#   ./run_scaling.sh --sizes 3.5h                 # one size (resumable: finished runs kept)
#   ./run_scaling.sh --report-only true           # the report from results/scaling/*/runs
#
# Sizes (hours of distinct training audio, train + its augmented copy train_aug):
#   3.5h   2,400 utterances of data/fbank's train and their copies (the tables' set)
#   17.5h  all of data/fbank's train and train_aug (12,000 + 12,000)
#   70h    all of data_x4/fbank's (48,000 + 48,000): ./run.sh --data data_x4 as above
# Every run: --max-steps 2000 updates of 60 s batches (33 h of audio seen: 9.5 passes over
# 3.5h, 1.9 over 17.5h, half of 70h), dev measured every 250 updates, the final model
# decoded (--avg 1). The rule that decides "MoE-8e beats B1" is results/scaling/RULE.md,
# written before the first run. Resumable like run_tables.sh; commit results/scaling/.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

sizes="3.5h 17.5h 70h"
systems="b1 moe_8e_freeze dense_8l"
not_run="dense_8l@17.5h"  # the study's design: dense_8l at the smallest and largest size
seeds="1 2 3"
max_steps=2000
valid_every_n=250
variants=$(cat conf/stability_variants.json)  # moe_8e_freeze and the others (run_tables.sh)
upcycle_sizes="3.5h"     # where moe_8e_up also runs (issue 19 part 2, compared on dev)
upcycle_from=epoch-4.pt  # its base: dense_8l's checkpoint of the same seed (3.5h: update 973)
moe_system=moe_8e_freeze  # whose change against B1 the figure plots
report_only=false
results=results/scaling
exp=exp/scaling

. ../../tools/parse_options.sh

upcycled_variants() {  # the stability variants and moe_8e_up: MoE-8e (routing frozen from its
  # update 250) upcycled from dense_8l's $upcycle_from of the same seed, the base's updates
  # counted in the budget (local/tables.py fills in {exp} and {seed})
  python - "$variants" "$upcycle_from" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
v["moe_8e_up"] = {"base": "moe_8e", "train": "--freeze-routing-after 250 --init-from "
                  "{exp}/dense_8l/seed{seed}/" + sys.argv[2] + " --budget-includes-base true"}
print(json.dumps(v))
PY
}

size_options() {  # the run_tables.sh options that make a size
  case "$1" in
    3.5h) echo "--train-utts 2400 --train-cuts-dir data/fbank" ;;
    17.5h) echo "--train-utts 0 --train-cuts-dir data/fbank" ;;
    70h) echo "--train-utts 0 --train-cuts-dir data_x4/fbank" ;;
    *) echo "run_scaling.sh: unknown size $1 (3.5h, 17.5h or 70h)" >&2; return 1 ;;
  esac
}

if ! $report_only; then
  for size in $sizes; do
    opts=$(size_options "$size")
    if [ "$size" = 70h ] && [ ! -f data_x4/fbank/cuts_train_aug.jsonl.gz ]; then
      echo "run_scaling.sh: size 70h needs data_x4/fbank (./run.sh --data data_x4" \
           "--num-train 48000 --stop-stage 2)" >&2
      exit 1
    fi
    size_systems=$systems
    case " $upcycle_sizes " in *" $size "*) size_systems="$systems moe_8e_up" ;; esac
    echo "$(date '+%F %T') [run_scaling.sh] size $size: $opts; $size_systems"
    # shellcheck disable=SC2086
    ./run_tables.sh --tables-dir "$results/$size" --exp "$exp/$size" \
      --systems "$size_systems" --seeds "$seeds" $opts --num-epochs 1000 --avg 1 \
      --train-options "--max-steps $max_steps --valid-every-n $valid_every_n" \
      --variants "$(upcycled_variants)"
  done
fi
# the report covers the whole study whatever --sizes and --systems ran this time
# shellcheck disable=SC2086
python ../../local/scaling_report.py --results-dir "$results" --sizes 3.5h 17.5h 70h \
  --systems b1 moe_8e_freeze dense_8l moe_8e_up --seeds 1 2 3 --figure-system "$moe_system" \
  --optional-systems moe_8e_up $not_run --dev-pairs moe_8e_up:moe_8e_freeze
