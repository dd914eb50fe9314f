# Every variable of a speechmoe recipe with its default, the one place each is documented.
# egs/<corpus>/run.sh sources this file first, then sets only what its corpus needs
# differently (saying why), then sources tools/parse_options.sh: each variable below, and
# each the recipe adds, is then also an option (--num-epochs 20 sets num_epochs=20; an
# explicit option beats the recipe's value). tools/asr_stages.sh (stages 1-7) reads them.
# An empty value means what its comment says in brackets.
#
# Fixed by the layout, not options: the LM text stage 0 writes is $data/text/lm_text.txt
# and a model's training, decoding and scores are in $exp_dir ($exp/$model, or
# $exp/<model>_<tag> with --tag, unless --exp-dir names it).
#
# Reruns: every stage skips outputs that are complete and says so in one log line naming
# the file that says so (a done marker, or the output itself); the data stages (0-3) redo
# what their options changed, and are redone by deleting the file their skip line names.
# Training (stage 4) resumes its newest checkpoint, but refuses one trained with options
# that change the updates (--lr, --warmup-steps, --max-duration ...), naming each, until
# a new --tag / --exp-dir, --start-over true or --continue-with-new-options true says
# what to do.

# --- running
stage=0                  # run the stages from stage to stop_stage: 0 the recipe's data
stop_stage=6             #   preparation, 1-6 the shared stages, 7 the export
nj=2                     # parallel jobs of data preparation, features and decoding
data=data                # manifests, audio copies, RIRs, features, lang dir
exp=exp                  # experiments: $exp/<model>[_<tag>]
tag=""                   # names the experiment $exp/<model>_<tag>, e.g. --tag lr3e-3: another
                         #   setting of the same model beside the first [empty: $exp/<model>]
exp_dir=""               # the experiment directory of stages 4-7, whatever the model and tag
                         #   [empty: $exp/<model>_<tag>, or $exp/<model> without a tag]
force=false              # true: redo the experiment's stages even where complete: training from
                         #   scratch (stage 4, as --start-over: the old files are moved aside,
                         #   never deleted) and decoding (stage 5); scoring and export always
                         #   run. Only the stages in --stage..--stop-stage, so `--stage 5
                         #   --force true` decodes again without retraining

# --- the sets (stage 0 writes $data/manifests/cuts_<set>.jsonl.gz: docs/adding-a-corpus.md)
train_set=train          # training
dev_set=dev              # validation during training
test_sets=test           # decoded and scored (stages 5-6), space-separated
tune_sets=""             # the sets the WFST acoustic scale is chosen on (stage 5), their errors
                         #   pooled; each also gets features in stage 2 [empty: $dev_set]
degrade_sets=""          # test sets stage 1 makes from cuts_<set>_dry with held-out RIRs and
                         #   held-out noise kinds at 5-20 dB SNR (a condition like the paper's Spon)
dev_degrade_sets=""      # sets stage 1 makes likewise with the training RIRs and training noise:
                         #   a development set in degrade_sets' conditions from no test material

# --- stage 1: room impulse responses and augmentation
num_rirs=200             # simulated room impulse responses (pyroomacoustics)
heldout_rirs=0           # of them kept out of training, for degrade_sets
rvb_fraction=0.5         # a reverberant copy of this share of $train_set (${train_set}_rvb; the
                         #   paper's section 4.2) is added to training; 0: none
aug_copies=0             # augmented copies of $train_set added to training (${train_set}_aug; the
                         #   paper's systems have none); each cut draws:
speed_perturb=0.9,1.0,1.1  # a speed factor (lhotse perturb_speed, as icefall's AISHELL recipes)
tempo_perturb=1.0        #   then a tempo factor, pitch kept (WSOLA, audio stored under
                         #   $data/wav/; 1.0: none)
rvb_prob=0.5             #   a training RIR with this probability
noise_prob=0.5           #   a training noise with this probability,
noise_snr=0,20           #   at an SNR (dB) drawn from this range
noise_dir=""             # the training noise: the recordings under these directories, e.g.
                         #   "/data/musan/noise /data/musan/music" [empty: synthetic babble, music,
                         #   hum, blue and band-pass noise; never the held-out white, pink, brown]

# --- stage 2: features (log-Mel fbank, global CMVN from the training sets)
pitch=false              # append 2 pitch features (voicing, log F0): Kaldi's +pitch, for tonal
                         #   languages (sherpa-onnx computes none: stage 7 measures the cost)
num_mel_bins=40          # Mel bands (the paper's 40; sherpa-onnx's feature_dim, any number)
fbank_low_freq=20        # lowest Mel band edge in Hz (sherpa-onnx's default is 20)
fbank_high_freq=0        # highest edge in Hz, <= 0 an offset from Nyquist (sherpa-onnx's C / C++
                         #   APIs can only compute their default, -400)
fbank_dir=""             # where stage 2 writes the features and stages 4-7 read them; another
                         #   front end beside the first, e.g. $data/fbank80 [empty: $data/fbank]

# --- stage 3: lang dir (units, lexicon, LM, TLG)
unit_type=syllable       # syllable: the fixed toned syllables + English phones (Mandarin, the
                         #   paper's units, scored by CER); bpe: sentencepiece pieces trained on
                         #   the LM text (any language, scored by WER)
bpe_vocab_size=500       # pieces of the BPE model (unit_type=bpe; an upper bound); stage 3 warns
                         #   when it is too many for the LM text (most words one piece each)
open_vocabulary=uniform  # a word the LM text lacks can still be output: syllable units: every CJK
                         #   character is a one-character word of the lexicon and the LM too; bpe:
                         #   every piece is a fragment word, joined back into words after decoding
                         #   (he +llo -> hello); the LM's unigram floor spread evenly over them
                         #   (uniform) or by frequency in the LM text (freq); off: the LM text's
                         #   words only (stage 5 logs how many test words that makes unreachable)
char_weight=1.0          # open vocabulary: a character's (or fragment's) share of the LM's unigram
                         #   floor relative to a word's (<= 1)
tone_sandhi=false        # syllable units: the lexicon also holds each word as said under 3-3
                         #   tone sandhi (training labels keep citation tones)
lm_order=3               # order of the Kneser-Ney word LM
lm_cutoffs=""            # count cutoffs per order, e.g. 0,2 [empty: none]
lm_prune=0               # relative-entropy pruning threshold (SRILM's -prune), e.g. 1e-8; 0: none
ctc_topology=compact     # T of TLG: compact (O(N) arcs, a 4x faster search on the embedded
                         #   recipe, same dev CER) or standard (exact CTC, N^2 arcs)

# --- stage 4: training
model=moe_4e             # the system: conf/model/<model>.yaml (b1 b2 moe_l1 moe_emb moe_4e ...)
model_overrides='{}'     # JSON overriding keys of the model config, e.g. '{"num_layers": 2}'
seed=42                  # random seed of training (model initialisation, batch order)
num_epochs=10            # epochs to train
max_duration=200         # seconds of audio per batch (per process)
num_buckets=""           # duration buckets of the batch sampler [empty: train.py's, 10]; more
                         #   pad less, but 30 made the embedded recipe no faster and its dev
                         #   worse (egs/synth_mandarin/RESULTS.md)
lr=0.001                 # peak learning rate (AdamW)
warmup_steps=1000        # linear warm-up steps, then inverse square-root decay (training warns
                         #   after epoch 1 when the warm-up is over half the run: a smoke run)
save_every_n=1000        # steps between mid-epoch checkpoints (0: epoch ends only)
num_workers=""           # DataLoader worker processes per training process [empty: train.py's
                         #   choice: 0 on a CPU, 1 on a GPU]
amp=auto                 # mixed precision: bf16, fp16 (GPUs), none, or auto: bf16 where the
                         #   device computes it natively (GPUs with bf16, CPUs with AVX512-BF16
                         #   or AMX: the embedded recipe's step 1.36x faster), else none
accum_grad=1             # batches accumulated into one update
spec_augment=false       # SpecAugment masks on the training batches, sized by these five
spec_freq_masks=""       #   frequency masks per utterance [empty: train.py's default, likewise:]
spec_freq_width=""       #   widest frequency mask, in Mel bands
spec_time_masks=""       #   time masks per utterance
spec_time_width=""       #   widest time mask, in 10-ms frames
spec_time_fraction=""    #   most of an utterance all time masks cover together
start_over=false         # true: train from scratch, the experiment's files (checkpoints, logs,
                         #   decodings) moved to $exp_dir/previous-<date>-<time>/ (a rerun with
                         #   it starts over again: drop it to resume)
continue_with_new_options=false  # true: resume an experiment trained with other options (refused
                         #   otherwise); the change is logged and kept in $exp_dir/params.json
teacher=""               # distillation: a trained model (e.g. exp/moe_4e/avg-4-2.pt) whose
                         #   per-frame posteriors the model also learns (docs/training.md)
teacher_fbank_dir=""     #   ... its features of $train_sets (cuts_<set>.jsonl.gz, cmvn.pt);
                         #   another front end than $fbank_dir's is fine (a pitch teacher)
world_size=1             # training processes on this machine (GPUs; gloo on CPU); >1: torchrun
torchrun_args=""         # multi-node rendezvous (torchrun; run on every node), e.g. "--nnodes 2
                         #   --node-rank 0 --rdzv-backend c10d --rdzv-endpoint host0:29500"
                         #   [empty: --standalone]

# --- stages 5-7: decoding, scoring, export
avg=3                    # checkpoints averaged for decoding and export
beam=16                  # WFST decoding beam
max_active=7000          # WFST decoding: most active states
acoustic_scales=0.7,1.0,1.4,2.0,2.8  # WFST acoustic scale candidates, chosen on tune_sets
sherpa_onnx=true         # stage 7 also writes export/sherpa-onnx/ (sherpa-onnx's offline CTC
                         #   recognizer: model, tokens, TLG; README.md inside)
sherpa_pitch=mean        # a pitch model's pitch there (sherpa-onnx computes none): mean or
                         #   unvoiced constants (local/export.py --sherpa-pitch)

# The option list of a recipe's --help: every variable above, then the recipe's own ones
# (the arguments), each with the value it has when called. run.sh sets
#   help_message="Usage: ...
#   $(asr_options corpus_dir ...)"
asr_options() {
  local name value
  echo "Options, with this recipe's values (meanings: tools/asr_defaults.sh, run.sh):"
  for name in $(sed -n 's/^\([a-z_][a-z0-9_]*\)=.*/\1/p' "${BASH_SOURCE[0]}") "$@"; do
    value=${!name}
    case "$value" in ""|*[[:space:]\"]*) value="'$value'" ;; esac
    echo "  --${name//_/-} $value"
  done
}
