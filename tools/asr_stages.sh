#!/usr/bin/env bash
# The corpus-independent stages of a speechmoe recipe, sourced by egs/<corpus>/run.sh
# after its own stage 0 (data preparation into $data/manifests/cuts_<set>.jsonl.gz and
# the LM text). Every stage calls one Python script in local/; the scripts skip outputs
# that are complete (done markers, written last) and redo anything half-written.
#
#   1  RIR simulation and augmentation: a bank of room impulse responses (pyroomacoustics)
#      and held-out noise; a reverberant copy of $train_set ($train_set_rvb, --rvb-fraction
#      of it); training noise and the augmented copy ($train_set_aug: speed perturbation,
#      RIRs, noise, drawn per cut); the sets in $degrade_sets made from <set>_dry with
#      held-out RIRs + held-out noise kinds; the sets in $dev_degrade_sets likewise, with
#      training RIRs + training noise (a development set in the degraded sets' conditions)
#   2  features: $num_mel_bins-band fbank (+ pitch) for every set, global CMVN from the
#      training sets, in $fbank_dir
#   3  lang: the fixed units, lexicon (open vocabulary: every CJK character is a word),
#      Kneser-Ney LM ($lm_order, pruned at $lm_prune), G, TLG
#   4  training of conf/model/$model.yaml
#   5  decoding: CTC greedy and WFST, acoustic scale tuned on $tune_sets (errors pooled)
#   6  scoring: per-utterance alignments, summaries, $exp_dir/results.json
#   7  export (optional, not in 0-6): $exp_dir/export/, a self-contained model directory
#      for speechmoe-transcribe and speechmoe.recognizer.Recognizer, and in it
#      sherpa-onnx/ for sherpa-onnx's runtime (--sherpa-onnx true, the default)
#
# A rerun says what each stage skips and why (one log line naming the done marker or the
# output found). $exp_dir is $exp/$model (--tag T: $exp/${model}_T; --exp-dir: any). --force
# true redoes stage 4 (training from scratch, --start-over: the old files moved aside) and 5
# (decoding); training refuses to resume a checkpoint trained with other options until
# --start-over true or --continue-with-new-options true (or a new --tag / --exp-dir).
#
# The variables they read, their defaults and meanings: tools/asr_defaults.sh, which
# run.sh sources first (then its own values, then tools/parse_options.sh, then stage 0).
# A recipe never repeats a default: it sets only what its corpus needs differently.

log() { echo "$(date '+%F %T') [$(basename "$0")] $*"; }
die() { echo "$(date '+%F %T') [$(basename "$0")] error: $*" >&2; exit 1; }

declare -F asr_options > /dev/null || die "run.sh must source tools/asr_defaults.sh first"

speechmoe_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
local_dir=$speechmoe_root/local
lm_text=$data/text/lm_text.txt  # written by stage 0
fbank_dir=${fbank_dir:-$data/fbank}
if [ -z "$exp_dir" ]; then
  exp_dir=$exp/$model${tag:+_$tag}
fi
train_sets="$train_set"
[ "$rvb_fraction" != 0 ] && train_sets="$train_sets ${train_set}_rvb"
[ "$aug_copies" != 0 ] && train_sets="$train_sets ${train_set}_aug"
tune_sets=${tune_sets:-$dev_set}
all_sets=$(echo $train_sets $dev_set $tune_sets $test_sets | tr ' ' '\n' | awk '!seen[$0]++' | xargs)

# What stage 1 found complete, for its one skip line: "what (the file that says so)".
skipped=()

# The training noise (synthetic kinds, or the recordings under $noise_dir), made once.
make_train_noise() {
  if [ ! -f "$data/rir/noise_train.jsonl.gz" ] || \
     [ "$(cat "$data/rir/.noise_train.opts" 2>/dev/null)" != "$noise_dir" ]; then
    # shellcheck disable=SC2086
    python "$local_dir/simulate_rir.py" train-noise --out-dir "$data/rir" \
      --speech "$data/manifests/cuts_${train_set}.jsonl.gz" \
      ${noise_dir:+--noise-dir $noise_dir} || die "training noise failed"
    echo "$noise_dir" > "$data/rir/.noise_train.opts"
  else
    skipped+=("training noise ($data/rir/noise_train.jsonl.gz, same --noise-dir)")
  fi
}

# cuts_<set> from cuts_<set>_dry: every cut reverberated and mixed with noise at 5-20 dB
degrade() {  # set rirs noise seed
  if [ -f "$data/manifests/cuts_$1.jsonl.gz" ]; then
    skipped+=("$1 ($data/manifests/cuts_$1.jsonl.gz)")
    return 0
  fi
  python "$local_dir/simulate_rir.py" apply --rirs "$2" --noise "$3" --snr 5,20 --keep-ids \
    --seed "$4" --cuts-in "$data/manifests/cuts_${1}_dry.jsonl.gz" \
    --cuts-out "$data/manifests/cuts_$1.jsonl.gz" || die "degrading $1 failed"
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: RIR simulation and reverberant / noisy copies"
  if [ ! -f "$data/rir/noise.jsonl.gz" ]; then
    python "$local_dir/simulate_rir.py" bank --out-dir "$data/rir" --num-rirs "$num_rirs" \
      --heldout "$heldout_rirs" || die "RIR simulation failed"
  else
    skipped+=("RIR bank ($data/rir/noise.jsonl.gz, written last)")
  fi
  if [ "$rvb_fraction" != 0 ]; then
    if [ ! -f "$data/manifests/cuts_${train_set}_rvb.jsonl.gz" ]; then
      python "$local_dir/simulate_rir.py" apply --rirs "$data/rir/rirs_train.jsonl.gz" \
        --fraction "$rvb_fraction" --cuts-in "$data/manifests/cuts_${train_set}.jsonl.gz" \
        --cuts-out "$data/manifests/cuts_${train_set}_rvb.jsonl.gz" || die "reverberation failed"
    else
      skipped+=("${train_set}_rvb ($data/manifests/cuts_${train_set}_rvb.jsonl.gz)")
    fi
  fi
  if [ "$aug_copies" != 0 ]; then
    aug_out=$data/manifests/cuts_${train_set}_aug.jsonl.gz
    aug_opts="copies=${aug_copies} speeds=${speed_perturb} rvb=${rvb_prob} noise=${noise_prob} snr=${noise_snr} dir=${noise_dir}"
    [ "$tempo_perturb" != 1.0 ] && aug_opts="$aug_opts tempos=$tempo_perturb"
    # redo the copy (and its features) when its options change
    if [ ! -f "$aug_out" ] || [ "$(cat "$data/manifests/.${train_set}_aug.opts" 2>/dev/null)" != "$aug_opts" ]; then
      make_train_noise
      python "$local_dir/simulate_rir.py" augment --cuts-in "$data/manifests/cuts_${train_set}.jsonl.gz" \
        --cuts-out "$aug_out" --copies "$aug_copies" --speeds "$speed_perturb" \
        --tempos "$tempo_perturb" --audio-dir "$data/wav/${train_set}_aug_tempo" \
        --rirs "$data/rir/rirs_train.jsonl.gz" --rvb-prob "$rvb_prob" \
        --noise "$data/rir/noise_train.jsonl.gz" --noise-prob "$noise_prob" \
        --snr "$noise_snr" || die "augmentation failed"
      echo "$aug_opts" > "$data/manifests/.${train_set}_aug.opts"
      # every front end's features of the copy (--fbank-dir) are stale now
      rm -f "$fbank_dir/.${train_set}_aug.done" "$fbank_dir/cmvn.pt" \
        "$data"/fbank*/".${train_set}_aug.done" "$data"/fbank*/cmvn.pt
    else
      skipped+=("${train_set}_aug ($aug_out, made with these options:" \
                "$data/manifests/.${train_set}_aug.opts)")
    fi
  fi
  for s in $degrade_sets; do
    degrade "$s" "$data/rir/rirs_heldout.jsonl.gz" "$data/rir/noise.jsonl.gz" 1
  done
  for s in $dev_degrade_sets; do
    [ -f "$data/manifests/cuts_$s.jsonl.gz" ] || make_train_noise
    degrade "$s" "$data/rir/rirs_train.jsonl.gz" "$data/rir/noise_train.jsonl.gz" 2
  done
  if [ ${#skipped[@]} -gt 0 ]; then
    joined=$(printf '%s; ' "${skipped[@]}")
    log "Stage 1: complete, skipped: ${joined%; } (delete a file named to redo its part)"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: fbank features and global CMVN"
  # shellcheck disable=SC2086
  python "$local_dir/compute_fbank.py" --manifest-dir "$data/manifests" --out-dir "$fbank_dir" \
    --sets $all_sets --cmvn-sets $train_sets --num-jobs "$nj" --pitch "$pitch" \
    --num-mel-bins "$num_mel_bins" --low-freq "$fbank_low_freq" --high-freq "$fbank_high_freq" \
    || die "feature extraction failed"
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: lang ($unit_type units, lexicon, $lm_order-gram LM, TLG)"
  python "$local_dir/prepare_lang.py" --lm-text "$lm_text" --out-dir "$data/lang" \
    --order "$lm_order" --cutoffs "$lm_cutoffs" --prune "$lm_prune" \
    --unit-type "$unit_type" --bpe-vocab-size "$bpe_vocab_size" \
    --open-vocabulary "$open_vocabulary" --char-weight "$char_weight" \
    --tone-sandhi "$tone_sandhi" --topology "$ctc_topology" \
    || die "lang stage failed"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: training $model ($exp_dir)"
  rerun_opts=()  # what to do with an experiment already there (tools/asr_defaults.sh)
  if [ "$force" = true ]; then
    log "--force true: training $model from scratch (--start-over: the files of $exp_dir" \
      "move to $exp_dir/previous-<date>-<time>/, nothing is deleted)"
  fi
  if [ "$force" = true ] || [ "$start_over" = true ]; then
    rerun_opts+=(--start-over true)
  fi
  if [ "$continue_with_new_options" = true ]; then
    rerun_opts+=(--continue-with-new-options true)
  fi
  train_cuts=""
  for s in $train_sets; do train_cuts="$train_cuts $fbank_dir/cuts_$s.jsonl.gz"; done
  teacher_opts=()  # distillation (--teacher): the teacher's own features of the same sets
  if [ -n "$teacher" ]; then
    [ -n "$teacher_fbank_dir" ] || die "--teacher needs --teacher-fbank-dir (its features)"
    teacher_opts=(--teacher "$teacher" --teacher-cmvn "$teacher_fbank_dir/cmvn.pt" --teacher-cuts)
    for s in $train_sets; do teacher_opts+=("$teacher_fbank_dir/cuts_$s.jsonl.gz"); done
    log "distillation from $teacher (features: $teacher_fbank_dir)"
  fi
  launcher="python"
  if [ "$world_size" -gt 1 ] || [ -n "$torchrun_args" ]; then
    launcher="torchrun --nproc-per-node $world_size ${torchrun_args:---standalone}"
    log "data-parallel training: $launcher"
  fi
  # shellcheck disable=SC2086
  $launcher "$local_dir/train.py" --exp-dir "$exp_dir" --model-config "conf/model/$model.yaml" \
    --lang-dir "$data/lang" --train-cuts $train_cuts \
    --dev-cuts "$fbank_dir/cuts_$dev_set.jsonl.gz" --cmvn "$fbank_dir/cmvn.pt" \
    --num-epochs "$num_epochs" --max-duration "$max_duration" --lr "$lr" --seed "$seed" \
    ${num_buckets:+--num-buckets "$num_buckets"} \
    --warmup-steps "$warmup_steps" --save-every-n "$save_every_n" \
    --model-overrides "$model_overrides" ${num_workers:+--num-workers "$num_workers"} \
    --amp "$amp" --accum-grad "$accum_grad" --spec-augment "$spec_augment" \
    ${spec_freq_masks:+--spec-freq-masks "$spec_freq_masks"} \
    ${spec_freq_width:+--spec-freq-width "$spec_freq_width"} \
    ${spec_time_masks:+--spec-time-masks "$spec_time_masks"} \
    ${spec_time_width:+--spec-time-width "$spec_time_width"} \
    ${spec_time_fraction:+--spec-time-fraction "$spec_time_fraction"} ${rerun_opts[@]+"${rerun_opts[@]}"} \
    ${teacher_opts[@]+"${teacher_opts[@]}"} \
    || die "training failed (log: $exp_dir/log/train.log)"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "Stage 5: decoding (CTC greedy, WFST)"
  decode_opts=()
  if [ "$force" = true ]; then
    decode_opts+=(--force)
  fi
  # shellcheck disable=SC2086
  python "$local_dir/decode.py" --exp-dir "$exp_dir" --lang-dir "$data/lang" \
    --cmvn "$fbank_dir/cmvn.pt" --cuts-dir "$fbank_dir" --sets $test_sets \
    --tune-set $tune_sets --avg "$avg" --beam "$beam" --max-active "$max_active" \
    --acoustic-scales "$acoustic_scales" --num-jobs "$nj" ${decode_opts[@]+"${decode_opts[@]}"} \
    || die "decoding failed (log: $exp_dir/log/decode.log)"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "Stage 6: scoring"
  # shellcheck disable=SC2086
  python "$local_dir/score.py" --exp-dir "$exp_dir" --lang-dir "$data/lang" \
    --cuts-dir "$fbank_dir" --sets $test_sets || die "scoring failed"
  log "results: $exp_dir/results.json"
  cat "$exp_dir/results.json"
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "Stage 7: export ($exp_dir/export)"
  sherpa_opts=""
  if [ "$sherpa_onnx" = true ]; then
    # a pitch model's export says what constant pitch costs on the dev set (local/export.py)
    sherpa_opts="--sherpa-onnx --sherpa-pitch $sherpa_pitch"
    [ "$pitch" = true ] && sherpa_opts="$sherpa_opts --pitch-cost-cuts $fbank_dir/cuts_$dev_set.jsonl.gz --beam $beam --max-active $max_active"
  fi
  # shellcheck disable=SC2086
  python "$local_dir/export.py" --exp-dir "$exp_dir" --lang-dir "$data/lang" \
    --cmvn "$fbank_dir/cmvn.pt" --avg "$avg" $sherpa_opts || die "export failed"
  log "transcribe recordings with: speechmoe-transcribe $exp_dir/export FILE..."
  if [ "$sherpa_onnx" = true ]; then
    log "sherpa-onnx: copy $exp_dir/export/sherpa-onnx/ to the device (its README.md)"
  fi
fi
