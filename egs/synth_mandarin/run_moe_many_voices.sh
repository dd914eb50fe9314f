#!/usr/bin/env bash
# MoE-8e on the many-voice corpus (issue 36): the routed recipe chosen on dev_unseen
# (results/moe_many_voices/RULE.md, written before the first run), then the comparison.
#
#   ./run.sh --stop-stage 3                            # corpus version 2 (once)
#   ./run_moe_many_voices.sh                           # item 2, step 1: seed 1 of (a) (b) (c)
#   ./run_moe_many_voices.sh --systems "dense_8l moe_8e_3m" --seeds "2 3"   # step 2
#
# Every run: ./run_tables.sh --dev-only true at 17.5 h (all of data/fbank's train and
# train_aug), 2,000 updates of 60 s batches, dev_unseen every 250 updates; DEV.md and
# dev.json in results/moe_many_voices/recipe_17.5h/. Resumable like run_tables.sh:
# finished runs are kept, a killed one resumes. Commit results/moe_many_voices/ after each.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

systems="dense_8l moe_8e moe_8e_freeze moe_8e_3m"  # dense_8l first: (c)'s base
seeds="1"
max_steps=2000
valid_every_n=250
results=results/moe_many_voices
exp=exp/moe_many_voices

. ../../tools/parse_options.sh

# (b) as the stability study adopted it; (c) the authors' recipe (RULE.md): dense_8l's first
# epoch of the same seed upcycled, the embedding detached, expert dropout 0.2, no freeze
variants=$(python - <<'PY'
import json
v = json.load(open("conf/stability_variants.json"))
print(json.dumps({
    "moe_8e_freeze": v["moe_8e_freeze"],
    "moe_8e_3m": {"base": "moe_8e",
                  "model": {"detach_embedding": True, "expert_dropout": 0.2},
                  "train": "--init-from {exp}/dense_8l/seed{seed}/epoch-1.pt "
                           "--budget-includes-base true"}}))
PY
)

# shellcheck disable=SC2086
./run_tables.sh --dev-only true --reference-system dense_8l \
  --tables-dir "$results/recipe_17.5h" --exp "$exp/17.5h" --systems "$systems" \
  --seeds "$seeds" --train-utts 0 --train-cuts-dir data/fbank --num-epochs 1000 --avg 1 \
  --train-options "--max-steps $max_steps --valid-every-n $valid_every_n" \
  --variants "$variants"
