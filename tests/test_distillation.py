"""Distillation (issue 37's device model): the frame-level KL against hand-computed values,
and the trainer's teacher: its input in every batch, the loss it adds, and the refusals."""

import dataclasses
import math

import pytest
import torch

from speechmoe.losses import distillation_sum


def test_the_kl_of_one_frame_by_hand():
    teacher = torch.log(torch.tensor([[[0.75, 0.25]]]))
    student = torch.zeros(1, 1, 2)  # logits: 0.5 / 0.5
    want = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # 0.130812
    got = distillation_sum(student, teacher, torch.tensor([1]))
    assert got.item() == pytest.approx(want, abs=1e-6)
    assert want == pytest.approx(0.130812, abs=1e-6)
    # the student as log-probs instead of logits: the same (log-softmax is idempotent)
    assert distillation_sum(torch.log_softmax(student, -1), teacher,
                            torch.tensor([1])).item() == pytest.approx(want, abs=1e-6)


def test_temperature_softens_both_and_scales_by_its_square():
    teacher = torch.log(torch.tensor([[[0.75, 0.25]]]))
    student = torch.zeros(1, 1, 2)
    p = torch.tensor([0.75, 0.25]) ** 0.5  # p^(1/T), T = 2
    p = p / p.sum()
    want = 4 * float((p * torch.log(p / 0.5)).sum())
    assert distillation_sum(student, teacher, torch.tensor([1]), 2.0).item() == \
        pytest.approx(want, abs=1e-6)


def test_only_valid_frames_of_both_count():
    teacher = torch.log(torch.tensor([[[0.75, 0.25], [0.5, 0.5], [0.9, 0.1]],
                                      [[0.75, 0.25], [0.75, 0.25], [0.75, 0.25]]]))
    student = torch.zeros(2, 4, 2)  # one frame longer than the teacher: not compared
    kl = {0.75: 0.130812, 0.5: 0.0, 0.9: 0.9 * math.log(1.8) + 0.1 * math.log(0.2)}
    # utterance 1: 3 valid frames; utterance 2: 1 valid frame
    want = kl[0.75] + kl[0.5] + kl[0.9] + kl[0.75]
    got = distillation_sum(student, teacher, torch.tensor([3, 1]))
    assert got.item() == pytest.approx(want, abs=1e-5)


def test_a_teacher_of_other_units_is_refused():
    with pytest.raises(ValueError, match="same lang dir"):
        distillation_sum(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.tensor([2]))


def _teacher_checkpoint(trainer, path):
    from speechmoe.checkpoint import save_checkpoint

    save_checkpoint(path, model=trainer.model.state_dict(), epoch=1, step=10, params={},
                    model_config=trainer.system.to_dict())
    return str(path)


def test_the_trainer_adds_the_teachers_kl(train_params, tiny_corpus, tmp_path):
    """A student that starts as a copy of its teacher (same seed, same system) has a KL of
    0; once its weights move, the loss is the SpeechMoE loss + weight x the KL."""
    from speechmoe.train.trainer import Trainer

    teacher = _teacher_checkpoint(Trainer(train_params), tmp_path / "teacher.pt")
    params = dataclasses.replace(
        train_params, exp_dir=str(tmp_path / "student"), teacher=teacher,
        teacher_cuts=[str(tiny_corpus["cuts"])], teacher_cmvn=str(tiny_corpus["cmvn"]),
        distill_weight=0.5)
    student = Trainer(params)
    batch = student.loader.dataset[next(iter(student.sampler))]
    assert torch.equal(batch["teacher_features"], batch["features"])  # the same front end
    assert torch.equal(batch["teacher_lengths"], batch["lengths"])
    _, loss, parts = student.forward_loss(batch)
    assert parts["distill"].item() == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        for q in student.model.parameters():
            q.add_(0.05 * torch.randn_like(q))
    out, loss, parts = student.forward_loss(batch)
    kl = parts["distill"].item()
    assert kl > 0.01
    # normalised like the CTC loss: per utterance, or per output frame
    with torch.no_grad():
        t_out = student.teacher(batch["teacher_features"], batch["teacher_lengths"], False)
        total = distillation_sum(out.logits if out.logits is not None else out.log_probs,
                                 t_out.log_probs, out.lengths).item()
    count = len(batch["cut_ids"]) if student.system.loss.normalization == "utterance" \
        else int(out.lengths.sum())
    assert kl == pytest.approx(total / count, rel=1e-5)
    teacher_model, student.teacher = student.teacher, None
    _, plain, plain_parts = student.forward_loss(batch)
    assert "distill" not in plain_parts
    assert loss.item() == pytest.approx(plain.item() + 0.5 * kl, rel=1e-4)
    # the teacher is not trained
    assert not any(q.requires_grad for q in teacher_model.parameters())


def test_a_teacher_without_every_training_utterance_is_refused(train_params, tiny_corpus,
                                                               tmp_path):
    from lhotse import CutSet

    from speechmoe.train.trainer import Trainer

    teacher = _teacher_checkpoint(Trainer(train_params), tmp_path / "teacher.pt")
    few = tmp_path / "few.jsonl.gz"
    CutSet.from_file(tiny_corpus["cuts"]).subset(first=5).to_file(few)
    params = dataclasses.replace(
        train_params, exp_dir=str(tmp_path / "student"), teacher=teacher,
        teacher_cuts=[str(few)], teacher_cmvn=str(tiny_corpus["cmvn"]))
    with pytest.raises(ValueError, match=r"few.jsonl.gz: no teacher features for \d+ training"):
        Trainer(params)
    with pytest.raises(ValueError, match="--teacher, --teacher-cuts and --teacher-cmvn"):
        Trainer(dataclasses.replace(params, teacher_cmvn=""))


def test_a_teacher_of_other_frames_is_refused(train_params, tiny_corpus, tmp_path):
    """A teacher whose output frames are not the student's (another subsampling) cannot be
    compared frame by frame."""
    import json
    import shutil

    from speechmoe.features import FeatureConfig
    from speechmoe.train.trainer import Trainer

    teacher = _teacher_checkpoint(Trainer(train_params), tmp_path / "teacher.pt")
    other = tmp_path / "other_frames"
    other.mkdir()
    shutil.copy(tiny_corpus["cmvn"], other / "cmvn.pt")
    cfg = FeatureConfig.for_cmvn(tiny_corpus["cmvn"]).to_dict()
    (other / "features.json").write_text(json.dumps({**cfg, "subsample": 2}))
    params = dataclasses.replace(
        train_params, exp_dir=str(tmp_path / "student"), teacher=teacher,
        teacher_cuts=[str(tiny_corpus["cuts"])], teacher_cmvn=str(other / "cmvn.pt"))
    with pytest.raises(ValueError, match="the teacher's frames .* are not the student's"):
        Trainer(params)


def test_a_resume_whose_teacher_was_rewritten_is_refused(train_params, tiny_corpus, tmp_path):
    """The teacher is recorded by content: the same path holding another model (a retrained
    teacher) would change the targets mid-run."""
    from speechmoe.train.trainer import Trainer, train

    base = Trainer(train_params)
    teacher = _teacher_checkpoint(base, tmp_path / "teacher.pt")
    params = dataclasses.replace(
        train_params, exp_dir=str(tmp_path / "student"), teacher=teacher,
        teacher_cuts=[str(tiny_corpus["cuts"])], teacher_cmvn=str(tiny_corpus["cmvn"]),
        num_epochs=1, save_every_n=0)
    train(params)
    assert Trainer(dataclasses.replace(params, num_epochs=2)).start_epoch == 2
    with torch.no_grad():
        for q in base.model.parameters():
            q.add_(0.05)
    _teacher_checkpoint(base, tmp_path / "teacher.pt")
    with pytest.raises(ValueError, match=r"--teacher \S*teacher.pt \(sha256 \w{12}\) -> "
                                         r"\S*teacher.pt rewritten since"):
        Trainer(dataclasses.replace(params, num_epochs=2))
    resumed = Trainer(dataclasses.replace(params, num_epochs=2, continue_with_new_options=True))
    assert resumed.start_epoch == 2
