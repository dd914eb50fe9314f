#!/usr/bin/env bash
# Which front end sherpa-onnx can compute and still hear tones with (issue 37): the default
# recipe's model trained on each candidate's features with the default recipe's settings,
# decoded and scored by stages 5-6; then results/frontend/FRONTEND.md and frontend.json. The
# candidates and the rule that chooses are results/frontend/RULE.md, written before the
# first result.
#
#   ./run.sh --stop-stage 3                  # the corpus (once; the default recipe's)
#   ./run_frontends.sh                       # step 1: seed 42 of every candidate
#   ./run_frontends.sh --candidates "mel40_pitch mel80" --seeds "43 44"   # step 2
#   ./run_frontends.sh --candidates mel80_distill   # step 3 (RULE.md's addendum): mel80's
#                                            # front end distilled from mel40_pitch's model
#                                            # of the same seed
#   ./run_frontends.sh --report-only true    # the report from results/frontend/runs/
#
# Resumable: a run whose results are in results/frontend/runs/ is skipped, a killed one
# resumes from its last checkpoint (stage 4), a front end's features are made once
# (data/fbank_<name>; mel40_pitch's are the recipe's data/fbank). Runs go to
# exp/frontend/<name>/seed<seed>, except mel40_pitch at seed 42, which is the default
# recipe's own run (exp/moe_4e). Commit results/frontend/ after each run.

set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

candidates="mel40_pitch mel40 mel80 mel120"
seeds="42"
report_only=false
results=results/frontend

. ../../tools/parse_options.sh

exp_of() {  # the experiment dir of a candidate at a seed
  if [ "$1/$2" = mel40_pitch/42 ]; then echo exp/moe_4e; else echo "exp/frontend/$1/seed$2"; fi
}

frontend_options() {  # run.sh's options of a candidate at a seed (results/frontend/RULE.md)
  case "$1" in
    mel40_pitch) echo "--pitch true" ;;
    mel40|mel80|mel120)
      echo "--pitch false --num-mel-bins ${1#mel} --fbank-high-freq -400 --fbank-dir data/fbank_$1" ;;
    mel40_distill|mel80_distill|mel120_distill)  # the addendum's D: taught by mel40_pitch
      local teacher
      teacher=$(exp_of mel40_pitch "$2")/avg-4-2.pt
      if [ ! -f "$teacher" ]; then
        echo "run_frontends.sh: $1 seed $2 needs its teacher $teacher (mel40_pitch seed $2)" >&2
        return 1
      fi
      echo "$(frontend_options "${1%_distill}" "$2") --teacher $teacher --teacher-fbank-dir data/fbank" ;;
    *) echo "run_frontends.sh: unknown candidate $1 (mel40_pitch mel40 mel80 mel120," \
            "or one of the last three + _distill)" >&2
       return 1 ;;
  esac
}

if [ "$report_only" != true ]; then
  for seed in $seeds; do
    for name in $candidates; do
      run_dir=$results/runs/${name}_seed$seed
      if [ -f "$run_dir/results.json" ]; then
        echo "$(date '+%F %T') [run_frontends.sh] $name seed $seed: done ($run_dir)"
        continue
      fi
      opts=$(frontend_options "$name" "$seed")
      exp_dir=$(exp_of "$name" "$seed")
      echo "$(date '+%F %T') [run_frontends.sh] $name seed $seed: $opts -> $exp_dir"
      # shellcheck disable=SC2086
      ./run.sh --stage 2 --stop-stage 2 $opts
      # shellcheck disable=SC2086
      ./run.sh --stage 4 --stop-stage 6 $opts --seed "$seed" --exp-dir "$exp_dir"
      python "$results/frontend.py" collect --name "$name" --seed "$seed" \
        --exp-dir "$exp_dir" --out "$run_dir"
    done
  done
fi
python "$results/frontend.py" report --runs "$results/runs" --out "$results"
