#!/usr/bin/env bash
# The toolkit's GPU checks in one command (`make gpu-check`), for a machine with CUDA:
#
#   1  the CUDA-only tests (tests/test_cuda.py, marked `cuda`): the dispatch against the
#      CPU, one host sync per MoE layer (CUDA's sync debug mode), bf16 and fp16 steps
#   2  the training-step benchmark of the paper's B1 and MoE-8e side by side
#      (speechmoe.bench.train_step; its last line is the MoE-8e / B1 step-time ratio)
#   3  a short training of the paper-scale MoE-8e (egs/aishell2/conf/model/moe_8e.yaml)
#      under torchrun, one process per GPU (NCCL), on the embedded corpus at toy size
#      (stages 0-3 of `egs/synth_mandarin/run.sh --tiny true`, in a scratch copy); it
#      checks that every loss is finite and that the loss falls. With one GPU, torchrun
#      starts one process, which trains without a process group: NCCL is exercised on
#      machines with 2 or more GPUs.
#
#   tools/gpu_check.sh [--out DIR] [--amp bf16|fp16|none] [--epochs N] [--device cuda|cpu]
#                      [--model-overrides JSON]
#
# Everything goes under --out (default gpu_check/ at the repository root): a log per step
# and summary.txt, which names the device. --device cpu runs steps 2 and 3 on the CPU
# (gloo, fp32 unless --amp says otherwise; slow at the paper's size) to check the script
# itself; step 1 then only reports that the CUDA tests skip. --model-overrides changes the
# trained model of step 3 (e.g. '{"num_layers": 4}' for a quick check on a CPU).

set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/gpu_check
amp=bf16
epochs=6
device=cuda
overrides='{}'
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --amp) amp=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --model-overrides) overrides=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
py=$root/.venv/bin/python
[ -x "$py" ] || { echo "gpu_check.sh: $py not found: run 'make install' first" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
summary=$out/summary.txt
say() { echo "$*" | tee -a "$summary"; }
: > "$summary"

if [ "$device" = cuda ]; then
  ngpu=$("$py" -c 'import torch; print(torch.cuda.device_count())')
  [ "$ngpu" -gt 0 ] || { echo "gpu_check.sh: torch sees no CUDA device (--device cpu checks the script on the CPU)" >&2; exit 1; }
  say "device: $("$py" -c 'import torch; print(torch.cuda.get_device_name(0))') x $ngpu, torch $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
  if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_bf16_supported() else 1)' && [ "$amp" = bf16 ]; then
    echo "gpu_check.sh: this GPU has no bf16: use --amp fp16" >&2; exit 1
  fi
else
  ngpu=1
  say "device: cpu, torch $("$py" -c 'import torch; print(torch.__version__)') (a check of the script, not of a GPU)"
fi

echo "== 1: CUDA tests (log: $out/1_cuda_tests.log)"
set +e
(cd "$root" && "$py" -m pytest -q -m cuda tests/test_cuda.py -rs) > "$out/1_cuda_tests.log" 2>&1
rc=$?
set -e
say "cuda tests: $(tail -n 1 "$out/1_cuda_tests.log") (exit $rc)"
[ "$device" = cpu ] || [ $rc = 0 ] || { echo "gpu_check.sh: the CUDA tests failed: $out/1_cuda_tests.log" >&2; exit 1; }

echo "== 2: training-step benchmark, B1 and MoE-8e (log: $out/2_train_step.log)"
if [ "$device" = cuda ]; then bench_args="--batch-seconds 600 --utterances 60 --repeats 10 --loss-steps 5"
else bench_args="--batch-seconds 20 --utterances 4 --repeats 2 --loss-steps 2"; fi
# shellcheck disable=SC2086
"$py" -m speechmoe.bench.train_step "$root/egs/aishell2/conf/model/b1.yaml" \
  "$root/egs/aishell2/conf/model/moe_8e.yaml" --device "$device" --amp "$amp" \
  --baseline-amp "$amp" $bench_args \
  2>&1 | tee "$out/2_train_step.log"
say "train_step ($amp): $(grep -E '^(speedup_vs_baseline|forward_backward_ratio|step_time_ratio)=' "$out/2_train_step.log" | xargs)"

echo "== 3: paper-scale MoE-8e (overrides $overrides), $amp, torchrun with $ngpu process(es) (log: $out/3_train.log)"
work=$out/tree
if [ ! -f "$work/egs/synth_mandarin/data/lang/tokens.txt" ]; then
  rm -rf "$work"
  mkdir -p "$work/egs"
  cp -r "$root/tools" "$root/local" "$work/"
  ln -s "$root/.venv" "$work/.venv"
  mkdir -p "$work/egs/synth_mandarin"
  (cd "$root/egs/synth_mandarin" && tar cf - --exclude=./data --exclude=./exp --exclude=./results \
    --exclude=./tables .) | (cd "$work/egs/synth_mandarin" && tar xf -)
  (cd "$work/egs/synth_mandarin" && ./run.sh --tiny true --stop-stage 3) > "$out/3_data.log" 2>&1 \
    || { echo "gpu_check.sh: preparing the toy corpus failed: $out/3_data.log" >&2; exit 1; }
fi
exp=$out/moe_8e_$amp
rm -rf "$exp"
d=$work/egs/synth_mandarin/data
(cd "$work/egs/synth_mandarin" && "$root/.venv/bin/torchrun" --standalone --nproc-per-node "$ngpu" \
  "$root/local/train.py" --exp-dir "$exp" --model-config "$root/egs/aishell2/conf/model/moe_8e.yaml" \
  --lang-dir "$d/lang" --train-cuts "$d/fbank/cuts_train.jsonl.gz" "$d/fbank/cuts_train_aug.jsonl.gz" \
  --dev-cuts "$d/fbank/cuts_dev.jsonl.gz" --cmvn "$d/fbank/cmvn.pt" --num-epochs "$epochs" \
  --max-duration 120 --lr 0.001 --warmup-steps 20 --amp "$amp" --device "$device" \
  --log-interval 5 --model-overrides "$overrides") > "$out/3_train.log" 2>&1 \
  || { echo "gpu_check.sh: training failed: $out/3_train.log" >&2; exit 1; }
if [ "$ngpu" -gt 1 ] && [ "$device" = cuda ]; then say "torchrun: $ngpu processes, NCCL"
else say "torchrun: 1 process, no process group (NCCL needs 2 or more GPUs)"; fi
"$py" - "$exp/log/losses.jsonl" <<'EOF' | tee -a "$summary"
import json, math, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
if len(rows) < 10:
    sys.exit(f"{sys.argv[1]}: {len(rows)} steps, too few to judge (raise --epochs)")
bad = [r["step"] for r in rows if not all(math.isfinite(v) for k, v in r.items()
                                            if k not in ("epoch", "step"))]
first = sum(r["loss"] for r in rows[:5]) / 5
last = sum(r["loss"] for r in rows[-5:]) / 5
print(f"moe_8e training: {len(rows)} steps, loss {first:.3f} (first 5) -> {last:.3f} (last 5), "
      f"non-finite at steps {bad or 'none'}")
sys.exit(1 if bad or not last < 0.8 * first else 0)
EOF
echo "summary: $summary"
