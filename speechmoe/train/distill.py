"""Distillation in training (local/train.py --teacher): a trained model, possibly of another
front end, whose per-frame posteriors the model learns beside its own loss. Loading and
checking the teacher, and the loss term (speechmoe.losses.distillation_sum)."""

from __future__ import annotations

import json

import torch

from speechmoe.features import FeatureConfig, GlobalCMVN


def load_teacher(p, train_cuts, tokenizer, student_cfg: FeatureConfig, device, log):
    """--teacher: (the teacher model in eval mode on `device`, its inputs for the batches:
    a speechmoe.data.dataset.TeacherInputs), else (None, None). The teacher must share the
    lang dir's units and the student's output frames, and cover every training utterance
    with features that fit its own features.json and CMVN; anything else is refused here,
    before training, naming the file."""
    if not p.teacher:
        return None, None
    from lhotse import CutSet

    from speechmoe.data.dataset import TeacherInputs
    from speechmoe.inference import load_model_for_inference

    model, system = load_model_for_inference(p.teacher)
    if system.model.num_classes != tokenizer.vocab_size:
        raise ValueError(f"{p.teacher}: a teacher of {system.model.num_classes} output "
                         f"classes, {p.lang_dir} has {tokenizer.vocab_size}: distillation "
                         "needs the student's lang dir")
    cfg = FeatureConfig.for_cmvn(p.teacher_cmvn)
    if system.model.input_dim != cfg.model_dim:
        raise ValueError(f"{p.teacher}: takes {system.model.input_dim}-dim input, the "
                         f"features of {p.teacher_cmvn} make {cfg.model_dim}")
    timing = ("frame_shift_ms", "stack", "subsample")
    theirs = {k: getattr(cfg, k) for k in timing}
    ours = {k: getattr(student_cfg, k) for k in timing}
    if theirs != ours:
        raise ValueError(f"{p.teacher_cmvn}: the teacher's frames ({theirs}) are not the "
                         f"student's ({ours}): the frame-level KL compares output frames "
                         "one to one")
    cmvn = GlobalCMVN.load(p.teacher_cmvn, cfg)
    cuts = CutSet.from_files(p.teacher_cuts) if len(p.teacher_cuts) > 1 \
        else CutSet.from_file(p.teacher_cuts[0])
    inputs = TeacherInputs(cuts.to_eager(), cmvn, cfg, ", ".join(p.teacher_cuts))
    inputs.check_covers(c.id for c in train_cuts)
    first = next(iter(train_cuts)).id
    stored = inputs.load(first).shape[1]
    if stored != cfg.stored_dim:
        raise ValueError(f"{inputs.source}: cut {first} stores {stored}-dim features, the "
                         f"teacher's features.json {cfg.stored_dim} (pitch={cfg.pitch})")
    for q in model.parameters():
        q.requires_grad_(False)
    log.info("distillation from %s (%s, features %s), weight %g, temperature %g", p.teacher,
             system.name, json.dumps(cfg.to_dict()), p.distill_weight, p.distill_temperature)
    return model.to(device), inputs


def add_distillation(teacher, batch: dict, out, loss, parts: dict, p, amp_dtype, reduce,
                     device):
    """The SpeechMoE loss + distill_weight x the frame-level KL from the teacher (run under
    the same autocast), normalised like the CTC loss: per utterance or per frame, the count
    in parts["frames"], global under DDP like the loss's other statistics."""
    from speechmoe.losses import distillation_sum, globalize

    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                         enabled=amp_dtype is not None):
        t_out = teacher(batch["teacher_features"].to(device),
                        batch["teacher_lengths"].to(device), False)
    student = out.logits if out.logits is not None else out.log_probs
    kd_sum = distillation_sum(student, t_out.log_probs,
                              torch.minimum(out.lengths, t_out.lengths), p.distill_temperature)
    kd = globalize([kd_sum], reduce)[0] / parts["frames"].clamp_min(1)
    return loss + p.distill_weight * kd, {**parts, "distill": kd.detach()}
