#!/usr/bin/env bash
# Long recordings (issue 22): one recording made of test_chat's utterances (unseen
# sentences, held-out voices) joined with 0.4 s pauses, transcribed by the long-form path,
# against the same utterances transcribed one by one. Run from egs/synth_mandarin with a
# trained, exported model:
#   results/long_form/measure.sh MODEL_DIR MINUTES OUT_DIR [SET [TRANSCRIBE OPTIONS...]]
# SET: test_chat (default) or dev (for choosing the options).
set -euo pipefail
model=$1; minutes=$2; out=$3; set_name=${4:-test_chat}; shift 3; [ $# -gt 0 ] && shift
opts="$*"
py=../../.venv/bin/python
mkdir -p "$out"
$py - "$minutes" "$out" "$set_name" <<'PY'
import sys, numpy as np, soundfile as sf
minutes, out, name = float(sys.argv[1]), sys.argv[2], sys.argv[3]
ids = [l.split("\t")[:2] for l in open(f"data/text/{name}.tsv", encoding="utf-8")]
parts, refs, scp, total = [], [], [], 0.0
for uid, words in ids:
    x, sr = sf.read(f"data/wav/{name}/{uid}.wav", dtype="float32")
    if total + len(x) / sr > minutes * 60:
        break
    parts += [x, np.zeros(int(0.4 * sr), np.float32)]
    total += len(x) / sr + 0.4
    refs.append(f"{uid}\t{words}")
    scp.append(f"{uid} data/wav/{name}/{uid}.wav")
sf.write(f"{out}/long.wav", np.concatenate(parts), sr)
open(f"{out}/ref.tsv", "w").write("\n".join(refs) + "\n")
open(f"{out}/wav.scp", "w").write("\n".join(scp) + "\n")
open(f"{out}/long_ref.tsv", "w").write("long\t" + " ".join(r.split("\t")[1] for r in refs) + "\n")
print(f"{len(refs)} utterances, {total / 60:.1f} min")
PY
exe=../../.venv/bin/speechmoe-transcribe
/usr/bin/time -v $exe "$model" "$out/wav.scp" --threads 2 > "$out/hyp_utts.tsv" 2> "$out/utts.stderr"
rm -f "$out/segment_clock.txt"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
/usr/bin/time -v $exe "$model" "$out/long.wav" --threads 2 --format segments $opts 2> "$out/long.stderr" \
  | while IFS= read -r line; do printf '%s\n' "$line"; date +%s.%N >> "$out/segment_clock.txt"; done \
  > "$out/segments.tsv"
awk -F'\t' '{t = t $4} END {print "long\t" t}' "$out/segments.tsv" > "$out/hyp_long.tsv"
awk -F'\t' '{t = t $2} END {print "long\t" t}' "$out/hyp_utts.tsv" > "$out/hyp_utts_joined.tsv"
{
  echo "# $set_name, options: ${opts:-defaults}"
  echo "# one by one (per utterance, scored per utterance):"
  $py -m speechmoe.scoring "$out/ref.tsv" "$out/hyp_utts.tsv"
  echo "# one by one, joined into one line (the long file's reference):"
  $py -m speechmoe.scoring "$out/long_ref.tsv" "$out/hyp_utts_joined.tsv"
  echo "# the long recording, long-form path:"
  $py -m speechmoe.scoring "$out/long_ref.tsv" "$out/hyp_long.tsv"
  for f in utts long; do
    echo "# $f: $(grep -h 'recordings transcribed' "$out/$f.stderr")"
    echo "# $f: peak memory $(grep -h 'Maximum resident' "$out/$f.stderr" | awk '{printf "%.2f GiB", $NF/1048576}')"
  done
  echo "# segments: $(wc -l < "$out/segments.tsv"); the first printed $(awk -v t0="$t0" 'NR == 1 {printf "%.1f", $1 - t0}' "$out/segment_clock.txt") s after the start (model loading included)"
} | tee "$out/summary.txt"
