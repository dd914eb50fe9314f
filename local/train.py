#!/usr/bin/env python3
"""Training stage: train a SpeechMoE system (chosen by its model config) with CTC.

    local/train.py --exp-dir exp/moe_4e --model-config conf/model/moe_4e.yaml \
        --lang-dir data/lang --train-cuts data/fbank/cuts_train.jsonl.gz \
        --dev-cuts data/fbank/cuts_dev.jsonl.gz --cmvn data/fbank/cmvn.pt --num-epochs 10

Rerunning the same command resumes from the newest complete checkpoint in
--exp-dir (raising --num-epochs or --max-steps trains on). A rerun with an option that
changes the updates (--lr, --warmup-steps, --max-duration, --seed, --model-overrides,
--train-cuts ...; speechmoe/train/rerun.py lists the ones that may change) is refused
with every difference named: give the new options their own --exp-dir, or add
--start-over true (the old files move to <exp-dir>/previous-<date>-<time>/, nothing is
deleted) or --continue-with-new-options true (resume with them; recorded in params.json's
"history"). Logs go to <exp-dir>/log/train.log and TensorBoard to
<exp-dir>/tensorboard.

Data-parallel training: launch the same command with torchrun (NCCL on GPUs,
gloo on CPU), e.g. `torchrun --standalone --nproc-per-node 4 local/train.py ...`;
see speechmoe/train/distributed.py for several machines.

The loss is a per-frame average over the effective batch (max_duration x world size
x accum_grad seconds of audio), so neither more processes nor accumulation changes
the gradient's scale: an update on 8 GPUs equals one on 1 GPU with --accum-grad 8
(same --lr). When the effective batch grows, raise --lr with it (linear scaling,
with a longer warm-up) or keep it for a more conservative run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from speechmoe.logs import cli_main, script_parser
from speechmoe.utils import str2bool
from speechmoe.train.params import TrainParams
from speechmoe.train.trainer import train

HELP = {
    "num_epochs": "epochs to train",
    "max_steps": "stop after this many updates (0: no limit); the epoch in progress then ends "
                 "there: validated and saved as epoch-N.pt, like any other",
    "budget_includes_base": "with --init-from: --max-steps counts the base's updates too "
                            "(a budget of 2000 from a base of 973 trains 1027 more), for "
                            "comparisons against models trained from scratch",
    "max_duration": "seconds of audio per batch",
    "num_buckets": "duration buckets of the DynamicBucketingSampler",
    "lr": "peak learning rate (AdamW)",
    "warmup_steps": "linear warm-up steps, then inverse square-root decay",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "gradient-norm clipping",
    "seed": "random seed (model init, sampler)",
    "num_workers": "DataLoader worker processes (-1: 0 on a CPU, where a worker competes "
                   "with the step's threads for the cores, 1 on a GPU)",
    "log_interval": "steps between log lines / TensorBoard points / routing statistics",
    "save_every_n": "steps between mid-epoch checkpoints (0: epoch ends only)",
    "valid_every_n": "steps between mid-epoch dev measurements (log/valid.jsonl, TensorBoard; "
                     "0: epoch ends only): a dev curve whatever the epoch length",
    "keep_last_n": "mid-epoch checkpoints to keep",
    "freeze_routing_after": "from this update on, the routers and the shared embedding network "
                            "are frozen (0: never): routing then moves only with the backbone "
                            "(StableMoE's second stage)",
    "max_bad_steps": "consecutive non-finite losses before the run stops",
    "device": "auto (CUDA if available), cuda or cpu",
    "amp": "mixed precision: bf16, fp16 (with a gradient scaler), none, or auto (bf16 where "
           "the device computes it natively: GPUs with bf16, CPUs with AVX512-BF16 or AMX); "
           "router softmax and losses stay fp32",
    "step_kernels": "auto: on a CPU, time the training step's kernels that are faster on some "
                    "CPUs and slower on others (each off against all on, on the first use "
                    "on a machine, cached in ~/.cache/speechmoe/step_kernels.json) and keep "
                    "the faster; default: all on (speechmoe/train/step_kernels.py)",
    "accum_grad": "batches accumulated into one update (the effective batch is "
                  "max_duration x world size x accum_grad seconds)",
    "spec_augment": "SpecAugment on the training batches (true/false): frequency masks "
                    "over the same Mel bands of every delta order, time masks over all dims",
    "spec_freq_masks": "SpecAugment: frequency masks per utterance",
    "spec_freq_width": "SpecAugment: widest frequency mask, in Mel bands",
    "spec_time_masks": "SpecAugment: time masks per utterance",
    "spec_time_width": "SpecAugment: widest time mask, in 10-ms frames",
    "spec_time_fraction": "SpecAugment: most of an utterance all time masks cover together",
    "init_from": "a trained dense model's checkpoint (epoch-N.pt or avg-N-K.pt) to start from: "
                 "every expert a copy of its layer's feed-forward network, the embedding "
                 "network from the same base (the authors' 3M recipe; "
                 "speechmoe/model/upcycle.py); used by a fresh run only, but a resume "
                 "with another --init-from is refused like any changed option",
    "teacher": "distillation: a trained model's checkpoint (epoch-N.pt or avg-N-K.pt) whose "
               "per-frame posteriors the model also learns (a KL term beside the SpeechMoE "
               "loss); the teacher may have another front end (a pitch model teaching a "
               "pitch-free device model): give its features with --teacher-cuts and "
               "--teacher-cmvn",
    "teacher_cmvn": "distillation: the teacher's cmvn.pt (features.json beside it gives its "
                    "front end)",
    "distill_weight": "distillation: the loss is the SpeechMoE loss + this x the KL from the "
                      "teacher, normalised like the CTC loss",
    "distill_temperature": "distillation: both distributions softened by this temperature "
                           "(the KL scaled by its square)",
    "start_over": "train from scratch: the files of --exp-dir (checkpoints, logs, decodings) "
                  "move to <exp-dir>/previous-<date>-<time>/, nothing is deleted (a rerun "
                  "with it starts over again: drop it to resume)",
    "continue_with_new_options": "resume an experiment trained with other options (a resume "
                                 "is refused otherwise): the new options apply from its "
                                 "newest checkpoint on (a mid-epoch one whose batching "
                                 "changed restarts that epoch's data order); the change is "
                                 "logged and appended to params.json's history",
}


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, show_defaults=True)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--model-config", required=True, help="model/loss YAML (a paper system)")
    p.add_argument("--lang-dir", required=True, help="dir with tokens.txt and lexicon.txt")
    p.add_argument("--train-cuts", required=True, nargs="+",
                   help="cut manifests with features")
    p.add_argument("--dev-cuts", required=True)
    p.add_argument("--cmvn", required=True, help="global CMVN statistics (cmvn.pt)")
    p.add_argument("--model-overrides", default="{}",
                   help='JSON merged into the model config, e.g. \'{"num_layers": 2}\'')
    p.add_argument("--teacher-cuts", nargs="+", default=[],
                   help="distillation: the training utterances' cuts with the teacher's "
                        "features (the same cut ids as --train-cuts)")
    p.add_argument("--log-batches", action="store_true",
                   help="every rank writes the cut ids of its batches to "
                        "<exp-dir>/log/batches.rank<R>.jsonl")
    for f in dataclasses.fields(TrainParams):
        if f.name in HELP:
            p.add_argument("--" + f.name.replace("_", "-"),
                           type=str2bool if isinstance(f.default, bool) else type(f.default),
                           default=f.default, help=HELP[f.name])
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    kwargs = vars(args)
    try:
        kwargs["model_overrides"] = json.loads(kwargs["model_overrides"])
    except json.JSONDecodeError as exc:
        print(f"train.py: error: --model-overrides is not JSON: {exc}", file=sys.stderr)
        return 2
    train(TrainParams(**kwargs))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
