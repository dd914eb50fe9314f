"""What a training run is asked to do: its options (TrainParams, saved in every checkpoint
and in params.json), their checks, and the system config they make with the data's sizes."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import torch

from speechmoe.config import SystemConfig, load_config
from speechmoe.features import FeatureConfig
from speechmoe.train import rerun


@dataclass
class TrainParams:
    exp_dir: str
    model_config: str
    lang_dir: str
    train_cuts: list[str]
    dev_cuts: str
    cmvn: str
    num_epochs: int = 10
    max_steps: int = 0  # > 0: stop after this many updates (the epoch in progress ends there)
    budget_includes_base: bool = False  # --max-steps counts the --init-from base's updates
    max_duration: float = 200.0  # seconds of audio per batch
    num_buckets: int = 10
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 500
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    seed: int = 42
    num_workers: int = -1  # DataLoader workers; -1: 0 on a CPU, 1 on a GPU (resolve_num_workers)
    log_interval: int = 50
    save_every_n: int = 200  # mid-epoch checkpoint interval (steps); 0 = epoch ends only
    valid_every_n: int = 0  # mid-epoch dev validation interval (steps, log/valid.jsonl); 0 = off
    keep_last_n: int = 2  # mid-epoch checkpoints kept
    max_bad_steps: int = 20  # consecutive non-finite losses before the run stops
    device: str = "auto"  # auto (CUDA if available), cuda or cpu
    amp: str = "none"  # mixed precision: bf16, fp16 (gradient scaler), none, or auto (bf16
    # where the device computes it natively, else none: speechmoe.utils.native_bf16)
    step_kernels: str = "auto"  # auto: the step's kernels timed on this CPU and the faster
    # kept (speechmoe.train.step_kernels, cached per machine); default: all the new ones
    accum_grad: int = 1  # batches accumulated into one optimizer step
    log_batches: bool = False  # every rank writes its batches' cut ids per step
    spec_augment: bool = False  # SpecAugment masks on the training batches
    spec_freq_masks: int = 2  # frequency masks per utterance ...
    spec_freq_width: int = 8  # ... each at most this many Mel bands wide
    spec_time_masks: int = 4  # time masks per utterance ...
    spec_time_width: int = 20  # ... each at most this many 10-ms frames ...
    spec_time_fraction: float = 0.1  # ... in all at most this share of the utterance
    model_overrides: dict = field(default_factory=dict)  # e.g. {"num_layers": 2}
    init_from: str = ""  # a dense model's checkpoint to upcycle from (speechmoe.model.upcycle)
    freeze_routing_after: int = 0  # > 0: routers and embedding network frozen from this update
    teacher: str = ""  # distillation: a trained model's checkpoint (its own front end) ...
    teacher_cuts: list[str] = field(default_factory=list)  # ... the same utterances' cuts
    # with the teacher's features, and its CMVN (features.json beside it: its front end)
    teacher_cmvn: str = ""
    distill_weight: float = 1.0  # loss = the SpeechMoE loss + this x the frame-level KL
    distill_temperature: float = 1.0  # both distributions softened by it (KL x T^2)
    start_over: bool = False  # a resume with other options: from scratch, old files moved
    continue_with_new_options: bool = False  # ... or resumed with them (train/rerun.py)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_params(params: "TrainParams") -> None:
    if params.amp not in AMP_DTYPES and params.amp != "auto":
        raise ValueError(f"--amp {params.amp!r}: choose bf16, fp16, none or auto")
    if params.accum_grad < 1:
        raise ValueError(f"--accum-grad {params.accum_grad}: must be >= 1")
    rerun.check_choice(params)
    given = [bool(params.teacher), bool(params.teacher_cuts), bool(params.teacher_cmvn)]
    if any(given) and not all(given):
        raise ValueError("distillation needs --teacher, --teacher-cuts and --teacher-cmvn "
                         "together (the teacher's checkpoint, its features of the training "
                         "utterances and its CMVN)")
    if params.teacher and not (params.distill_weight > 0 and params.distill_temperature > 0):
        raise ValueError(f"--distill-weight {params.distill_weight} and --distill-temperature "
                         f"{params.distill_temperature}: both must be > 0")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_system(params: TrainParams, vocab_size: int,
                 feature_config: FeatureConfig = FeatureConfig()) -> SystemConfig:
    """The model/loss config of params.model_config with the data's sizes: the lang dir's
    units (num_classes) and the stored features' model input (input_dim)."""
    overrides = {"model": {**params.model_overrides, "num_classes": vocab_size,
                           "input_dim": feature_config.model_dim}}
    return load_config(params.model_config, overrides=overrides)
