#!/usr/bin/env bash
# MoE-8e on the many-voice corpus (issue 36), each part by a rule written before its first
# run: results/moe_many_voices/RULE.md (the routed recipe) and RULE_COMPARISON.md (the
# comparison with B1 and dense_8l).
#
#   ./run.sh --stop-stage 3                            # corpus version 2 (once)
#   ./run_moe_many_voices.sh                           # item 2, step 1: seed 1 of (a) (b) (c)
#   ./run_moe_many_voices.sh --systems "dense_8l moe_8e_3m" --seeds "2 3"   # step 2
#   ./run_moe_many_voices.sh --report-only true   # a part's report from its stored runs
#
#   ./run.sh --data data_x4 --num-train 48000 --stop-stage 2   # 70 h of corpus version 2
#   ./run_moe_many_voices.sh --part budget             # item 3: B1 seed 1 to 8,000 updates,
#                                                      # then the budget (budget_70h/budget.json)
#   ./run_moe_many_voices.sh --part compare --moe SYSTEM [--width 64]
#                                                      # b1, dense_8l, SYSTEM x seeds 1-3
#
# Part "recipe": ./run_tables.sh --dev-only true at 17.5 h (all of data/fbank's train and
# train_aug), 2,000 updates of 60 s batches, dev_unseen every 250 updates; DEV.md and
# dev.json in results/moe_many_voices/recipe_17.5h/.
# Parts "budget" and "compare": 70 h (data_x4/fbank's train and train_aug; lang dir, CMVN,
# dev and test sets from data/), dev_unseen every 200 updates; "compare" decodes and
# scores dev_unseen, dev and the three test sets (TABLES.md in compare_70h_d<width>/).
# Resumable like run_tables.sh: finished runs are kept, a killed one resumes. Commit
# results/moe_many_voices/ after each run.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

part=recipe              # recipe (item 2), budget or compare (item 3)
systems=""               # default: the part's (recipe: dense_8l moe_8e moe_8e_freeze moe_8e_3m)
seeds=""                 # default: recipe 1, budget 1, compare "1 2 3"
moe=""                   # compare: the MoE-8e recipe item 2 chose (moe_8e, moe_8e_freeze, moe_8e_3m)
width=128                # compare: d_model (128: the tables' widths; 64: half of every width)
budget=""                # compare: updates per run (default: budget_70h/budget.json's)
upcycle_base=epoch-1.pt  # moe_8e_3m's base: dense_8l's checkpoint of the same seed (compare:
                         # RULE_COMPARISON.md's addendum names it, written before those runs)
max_steps=2000           # recipe's budget
report_only=false        # true: the part's report from its stored runs (nothing trained)
results=results/moe_many_voices
exp=exp/moe_many_voices

. ../../tools/parse_options.sh

# (b) as the stability study adopted it; (c) the authors' recipe (RULE.md): dense_8l's first
# epoch of the same seed upcycled, the embedding detached, expert dropout 0.2, no freeze
if [ "$part" = compare ] && [ "$moe" = moe_8e_3m ] && [ "$upcycle_base" = epoch-1.pt ]; then
  echo "run_moe_many_voices.sh: --moe moe_8e_3m at 70 h needs --upcycle-base (dense_8l's" \
       "first epoch there is longer than a budget; see RULE_COMPARISON.md)" >&2
  exit 1
fi
variants=$(UPCYCLE_BASE=$upcycle_base python - <<'PY'
import json, os
v = json.load(open("conf/stability_variants.json"))
print(json.dumps({
    "moe_8e_freeze": v["moe_8e_freeze"],
    "moe_8e_3m": {"base": "moe_8e",
                  "model": {"detach_embedding": True, "expert_dropout": 0.2},
                  "train": "--init-from {exp}/dense_8l/seed{seed}/" + os.environ["UPCYCLE_BASE"] + " "
                           "--budget-includes-base true"}}))
PY
)

x4_cuts() {
  if [ ! -f data_x4/fbank/cuts_train_aug.jsonl.gz ]; then
    echo "run_moe_many_voices.sh: part $part needs data_x4/fbank (./run.sh --data data_x4" \
         "--num-train 48000 --stop-stage 2)" >&2
    exit 1
  fi
}

case $part in
  recipe)
    # shellcheck disable=SC2086
    ./run_tables.sh --dev-only true --reference-system dense_8l --report-only "$report_only" \
      --tables-dir "$results/recipe_17.5h" --exp "$exp/17.5h" \
      --systems "${systems:-dense_8l moe_8e moe_8e_freeze moe_8e_3m}" --seeds "${seeds:-1}" \
      --train-utts 0 --train-cuts-dir data/fbank --num-epochs 1000 --avg 1 \
      --train-options "--max-steps $max_steps --valid-every-n 250" --variants "$variants"
    ;;
  budget)
    x4_cuts
    ./run_tables.sh --dev-only true --reference-system b1 --report-only "$report_only" \
      --tables-dir "$results/budget_70h" --exp "$exp/budget_70h" --systems b1 \
      --seeds "${seeds:-1}" --train-utts 0 --train-cuts-dir data_x4/fbank --num-epochs 1000 \
      --avg 1 --train-options "--max-steps 8000 --valid-every-n 200"
    python -m speechmoe.tables.budget "$results/budget_70h/dev_runs/b1/seed1.json" \
      --out "$results/budget_70h/budget.json"
    ;;
  compare)
    x4_cuts
    if [ -z "$moe" ]; then
      echo "run_moe_many_voices.sh: --part compare needs --moe (the recipe item 2 chose)" >&2
      exit 1
    fi
    if [ -z "$budget" ]; then
      budget=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["budget"])' \
               "$results/budget_70h/budget.json") || {
        echo "run_moe_many_voices.sh: no budget: run --part budget first" >&2; exit 1; }
    fi
    overrides=$(python -c 'import json, sys; w = int(sys.argv[1]); print(json.dumps(
      {"d_model": w, "ffn_dim": 2 * w, "attention_ffn_dim": 2 * w}))' "$width")
    # shellcheck disable=SC2086
    ./run_tables.sh --reference-system b1 --report-only "$report_only" \
      --tables-dir "$results/compare_70h_d$width" --exp "$exp/compare_70h_d$width" \
      --systems "${systems:-b1 dense_8l $moe}" --seeds "${seeds:-1 2 3}" \
      --train-utts 0 --train-cuts-dir data_x4/fbank --num-epochs 1000 --avg 1 \
      --model-overrides "$overrides" --routing-system "$moe" \
      --test-sets "dev_unseen dev test_read test_chat test_spon" \
      --train-options "--max-steps $budget --valid-every-n 200" --variants "$variants"
    # RULE_COMPARISON.md's rule over both widths (a width not run yet is listed as missing)
    python ../../local/scaling_report.py --results-dir "$results" \
      --sizes compare_70h_d128 compare_70h_d64 --systems b1 dense_8l "$moe" \
      --test-sets dev_unseen dev test_read test_chat test_spon --pairs "$moe:dense_8l" \
      --figure-system "$moe" --title "MoE-8e, B1 and dense_8l on many voices (70 h, corpus version 2)"
    ;;
  *) echo "run_moe_many_voices.sh: unknown --part $part (recipe, budget or compare)" >&2; exit 1 ;;
esac
