"""Batches for training and decoding: lhotse cuts with stored fbank -> padded model input.

    cuts --DynamicBucketingSampler--> CutSet per batch --AsrDataset--> {features, lengths,
    targets, target_lengths, cut_ids, texts}

Deltas, global CMVN, SpecAugment (training only) and 8-frame stacking /
subsampling by 3 are applied here, per utterance, from the stored 40-dim fbank
(+ pitch).
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from speechmoe.features import FeatureConfig, GlobalCMVN, add_deltas, num_output_frames, \
    stack_and_subsample
from speechmoe.lang.tokenizer import LexiconTokenizer, OOVError, ctc_min_frames

log = logging.getLogger("speechmoe")


def cut_words(cut) -> list[str]:
    """The transcript of a cut as words (supervision texts are space-separated words)."""
    return " ".join(s.text or "" for s in cut.supervisions).split()


def model_input(fbank: torch.Tensor, cmvn: Optional[GlobalCMVN], cfg: FeatureConfig,
                spec_augment=None):
    if fbank.shape[1] != cfg.stored_dim:
        raise ValueError(f"stored features have {fbank.shape[1]} dims, the feature config "
                         f"{cfg.stored_dim} (pitch={cfg.pitch}): features.json and the "
                         "features disagree; rerun the feature stage")
    feats = add_deltas(fbank, cfg.delta_order, cfg.delta_window)
    if cmvn is not None:
        feats = cmvn.normalize(feats)
    if spec_augment is not None:
        feats = spec_augment(feats, cfg.num_mel_bins, cfg.stored_dim)
    return stack_and_subsample(feats, cfg.stack, cfg.subsample)


class TeacherInputs:
    """The teacher's model input for the student's utterances (distillation): the same
    utterances' cuts with the teacher's own stored features (another front end: a pitch
    model teaching a pitch-free one), found by cut id, under the teacher's CMVN and
    feature config, never augmented."""

    def __init__(self, cuts, cmvn: GlobalCMVN, feature_config: FeatureConfig, source: str):
        self.by_id = {c.id: c for c in cuts}
        self.cmvn, self.cfg, self.source = cmvn, feature_config, source

    def check_covers(self, cut_ids) -> None:
        """Every training cut must have a teacher cut: a clear error before the run."""
        missing = [i for i in cut_ids if i not in self.by_id]
        if missing:
            raise ValueError(f"{self.source}: no teacher features for {len(missing)} training "
                             f"utterance(s), e.g. {missing[:3]}: the teacher's cuts must hold "
                             "the same utterances (the same cut ids) as --train-cuts")

    def load(self, cut_id: str) -> torch.Tensor:
        """The teacher's stored features of one utterance (may fail on damaged storage)."""
        return torch.from_numpy(self.by_id[cut_id].load_features())

    def model_input(self, fbank: torch.Tensor) -> torch.Tensor:
        return model_input(fbank, self.cmvn, self.cfg)


class AsrDataset(torch.utils.data.Dataset):
    """Map-style dataset whose index is a CutSet (one batch), as lhotse samplers yield."""

    def __init__(self, cmvn: Optional[GlobalCMVN], tokenizer: Optional[LexiconTokenizer] = None,
                 feature_config: FeatureConfig = FeatureConfig(), spec_augment=None,
                 teacher: Optional[TeacherInputs] = None):
        self.cmvn = cmvn
        self.tokenizer = tokenizer
        self.cfg = feature_config
        self.spec_augment = spec_augment  # a speechmoe.data.augment.SpecAugment (training)
        self.teacher = teacher  # distillation: the teacher's input rides in every batch

    def __getitem__(self, cuts) -> dict:
        cuts = cuts.sort_by_duration(ascending=False)
        feats, kept, teacher_feats = [], [], []
        for c in cuts:
            try:
                fbank = torch.from_numpy(c.load_features())
                teacher_fbank = self.teacher.load(c.id) if self.teacher is not None else None
            except Exception as exc:  # damaged feature storage: lose the cut, not the run
                log.warning("cut %s: cannot load %sfeatures (%s: %s); left out of the batch",
                            c.id, "its own or the teacher's " if self.teacher else "",
                            type(exc).__name__, exc)
                continue
            # outside the try: features that do not fit the config are an error, not a loss
            feats.append(model_input(fbank, self.cmvn, self.cfg, self.spec_augment))
            if teacher_fbank is not None:
                teacher_feats.append(self.teacher.model_input(teacher_fbank))
            kept.append(c)
        cuts = kept
        if not feats:
            return {"features": torch.zeros(0, 0, self.cfg.model_dim),
                    "lengths": torch.zeros(0, dtype=torch.long), "cut_ids": [], "texts": [],
                    "speakers": [],
                    "targets": torch.zeros(0, 0, dtype=torch.long),
                    "target_lengths": torch.zeros(0, dtype=torch.long),
                    **({"teacher_features": torch.zeros(0, 0, self.teacher.cfg.model_dim),
                        "teacher_lengths": torch.zeros(0, dtype=torch.long)}
                       if self.teacher is not None else {})}
        lengths = torch.tensor([f.shape[0] for f in feats])
        batch = {
            "features": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),
            "lengths": lengths,
            "cut_ids": [c.id for c in cuts],
            "texts": [cut_words(c) for c in cuts],
            "speakers": [c.supervisions[0].speaker if c.supervisions else None for c in cuts],
        }
        if self.teacher is not None:
            batch["teacher_features"] = torch.nn.utils.rnn.pad_sequence(teacher_feats,
                                                                        batch_first=True)
            batch["teacher_lengths"] = torch.tensor([f.shape[0] for f in teacher_feats])
        if self.tokenizer is not None:
            targets = [torch.tensor(self.tokenizer.encode(w)) for w in batch["texts"]]
            batch["targets"] = torch.nn.utils.rnn.pad_sequence(targets, batch_first=True)
            batch["target_lengths"] = torch.tensor([len(t) for t in targets])
        return batch


def filter_trainable(cuts, tokenizer: LexiconTokenizer, cfg: FeatureConfig = FeatureConfig(),
                     name: str = "cuts"):
    """Keep the cuts CTC can train on; report every excluded one and why.

    Excluded: no features, an empty transcript, a word or unit outside the lang
    dir (OOV), and a transcript longer than CTC can align to the utterance's
    output frames. Returns (kept CutSet, list of (cut id, reason)).
    """
    from lhotse import CutSet

    kept, dropped = [], []
    for cut in cuts:
        try:
            if not cut.has_features:
                raise OOVError("no features (the feature stage dropped or skipped it)")
            ids = tokenizer.encode(cut_words(cut))
            frames = num_output_frames(cut.num_frames, cfg.subsample)
            need = ctc_min_frames(ids)
            if need > frames:
                raise OOVError(f"{len(ids)} labels need {need} CTC frames, the utterance has "
                               f"{frames} ({cut.duration:.2f} s)")
        except OOVError as exc:
            dropped.append((cut.id, str(exc)))
            continue
        kept.append(cut)
    for cut_id, reason in dropped[:20]:
        log.warning("%s: excluding %s: %s", name, cut_id, reason)
    if dropped:
        log.warning("%s: excluded %d of %d utterances%s", name, len(dropped),
                    len(dropped) + len(kept), " (first 20 listed)" if len(dropped) > 20 else "")
    return CutSet.from_cuts(kept), dropped
