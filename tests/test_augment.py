"""Augmentation: pitch features, SpecAugment, speed perturbation, noise mixing, held-out noise."""

import json
import math
import random

import numpy as np
import pytest
import torch

from speechmoe.data.augment import SpecAugment, augmented_copy, parse_factors
from speechmoe.features import FeatureConfig, add_deltas, base_features, fbank, num_frames, \
    pitch

RATE = 16000


def harmonic_glide(f_start: float, f_end: float, seconds: float = 1.0) -> np.ndarray:
    """A voiced-like signal: 8 harmonics of an F0 gliding exponentially f_start -> f_end."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = f_start * (f_end / f_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(h * phase) / h for h in range(1, 9))
    return (0.3 * x / np.abs(x).max()).astype(np.float32), f0


# ----------------------------------------------------------------------------- pitch

def test_pitch_tracks_a_glide_in_semitones_about_its_mean():
    x, f0 = harmonic_glide(100.0, 150.0)
    p = pitch(x, RATE).numpy()
    assert p.shape == (num_frames(len(x)), 2) == (fbank(x, RATE).shape[0], 2)
    centres = ((np.arange(len(p)) + 0.5) * 160).astype(int).clip(0, len(x) - 1)
    truth = 12 * np.log2(f0[centres])
    inner = slice(5, -5)  # frames whose window lies inside the signal
    assert (p[inner, 0] > 0.8).all()  # voiced
    # the track is normalised by its own mean: compare after removing the mean
    err = (p[inner, 1] - p[inner, 1].mean()) - (truth[inner] - truth[inner].mean())
    assert np.abs(err).max() < 0.3, np.abs(err).max()
    # a rise of 50% is 7.02 semitones end to end
    assert p[-6, 1] - p[5, 1] == pytest.approx(12 * math.log2(f0[centres[-6]] / f0[centres[5]]),
                                               abs=0.3)


def test_pitch_of_silence_and_noise_is_unvoiced_and_flat():
    silence = np.zeros(RATE // 2, dtype=np.float32)
    p = pitch(silence, RATE)
    assert p.shape == (50, 2) and torch.all(p == 0)
    noise = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1
    p = pitch(noise, RATE).numpy()
    assert np.median(p[:, 0]) < 0.3  # mostly unvoiced
    assert np.isfinite(p).all()


def test_pitch_does_not_depend_on_the_speakers_register():
    """The same contour an octave apart gives the same normalised track."""
    low, _ = harmonic_glide(90.0, 120.0)
    high, _ = harmonic_glide(180.0, 240.0)
    a, b = pitch(low, RATE).numpy(), pitch(high, RATE).numpy()
    assert np.abs(a[5:-5, 1] - b[5:-5, 1]).max() < 0.3


def test_base_features_append_pitch_only_when_asked():
    x, _ = harmonic_glide(100.0, 130.0, 0.5)
    plain = base_features(x, RATE, FeatureConfig())
    both = base_features(x, RATE, FeatureConfig(pitch=True))
    assert plain.shape[1] == 40 and both.shape[1] == 42 == FeatureConfig(pitch=True).stored_dim
    assert torch.equal(both[:, :40], plain)
    assert FeatureConfig(pitch=True).model_dim == 42 * 3 * 8


def test_feature_config_files_and_the_cmvn_dir(tmp_path):
    cfg = FeatureConfig(pitch=True)
    cfg.save(tmp_path / "features.json")
    assert FeatureConfig.for_cmvn(tmp_path / "cmvn.pt") == cfg
    assert FeatureConfig.for_cmvn(tmp_path / "elsewhere" / "cmvn.pt") == FeatureConfig()
    (tmp_path / "features.json").write_text(json.dumps({"pitch": True, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        FeatureConfig.for_cmvn(tmp_path / "cmvn.pt")


# ----------------------------------------------------------------------------- SpecAugment

def test_spec_augment_masks_one_band_in_every_delta_order_and_never_the_pitch():
    cfg = FeatureConfig(pitch=True)
    feats = add_deltas(torch.randn(300, cfg.stored_dim) + 5.0)  # (300, 126), no zeros
    aug = SpecAugment(freq_masks=1, freq_width=8, time_masks=0)
    for seed in range(20):
        out = aug(feats, cfg.num_mel_bins, cfg.stored_dim, random.Random(seed))
        masked = (out == 0).all(dim=0).reshape(3, cfg.stored_dim)  # per delta order
        assert torch.equal(masked[0], masked[1]) and torch.equal(masked[0], masked[2])
        assert not masked[:, cfg.num_mel_bins:].any()  # pitch dims untouched
        band = masked[0].nonzero().flatten()
        assert len(band) <= 8
        if len(band):
            assert band.max() - band.min() + 1 == len(band)  # contiguous
        keep = ~(out == 0).all(dim=0)
        assert torch.equal(out[:, keep], feats[:, keep])


def test_spec_augment_time_masks_cover_all_dims_within_the_budget():
    feats = torch.randn(400, 120) + 5.0
    aug = SpecAugment(freq_masks=0, time_masks=4, time_width=30, max_time_fraction=0.1)
    seen = 0
    for seed in range(20):
        out = aug(feats, 40, 40, random.Random(seed))
        rows = (out == 0).all(dim=1)
        partial = (out == 0).any(dim=1) & ~rows
        assert not partial.any()
        assert rows.sum() <= 40  # 10% of 400 frames
        seen += int(rows.sum())
    assert seen > 0
    assert torch.equal(SpecAugment(0, 8, 0)(feats, 40, 40), feats)


# ----------------------------------------------------------------------------- waveform copies

@pytest.fixture(scope="module")
def wave_cuts(tmp_path_factory):
    """Three harmonic 'utterances' with transcripts, a training noise bank and 4 RIRs."""
    import soundfile as sf
    from lhotse import CutSet, MonoCut, Recording, RecordingSet, SupervisionSegment

    from speechmoe.data.rir import training_noise_bank, write_wav_recording

    root = tmp_path_factory.mktemp("aug")
    cuts = []
    for i, (a, b) in enumerate([(100, 140), (150, 110), (200, 210)]):
        x, _ = harmonic_glide(a, b, 1.0 + 0.5 * i)
        path = root / f"u{i}.wav"
        sf.write(path, x, RATE)
        rec = Recording.from_file(path, recording_id=f"u{i}")
        sup = SupervisionSegment(f"u{i}", f"u{i}", 0.0, rec.duration, channel=0,
                                 text=f"词 {i}")
        cuts.append(MonoCut(f"u{i}", 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    cuts = CutSet.from_cuts(cuts)
    noises = training_noise_bank(root, per_kind=1, seconds=5.0, seed=0, speech_cuts=cuts)
    rng = np.random.default_rng(0)
    rirs = []
    for i in range(4):
        rir = np.zeros(4000, dtype=np.float32)
        rir[0] = 1.0
        rir[rng.integers(100, 4000, size=20)] = rng.uniform(-0.5, 0.5, size=20)
        rirs.append(write_wav_recording(root / "rir" / f"rir-{i}.wav", rir, RATE, f"rir-{i}"))
    return cuts, RecordingSet.from_recordings(noises), RecordingSet.from_recordings(rirs)


def test_speed_perturbation_changes_duration_and_keeps_labels(wave_cuts):
    cuts = wave_cuts[0]
    for factor in (0.9, 1.1):
        out, info = augmented_copy(cuts, [factor], seed=0)
        for c, o, d in zip(cuts, out, info):
            assert d["speed"] == factor and o.id == f"{c.id}_aug"
            assert o.duration == pytest.approx(c.duration / factor, abs=2e-3)
            assert o.load_audio().shape[1] == pytest.approx(c.num_samples / factor, abs=2)
            assert [s.text for s in o.supervisions] == [s.text for s in c.supervisions]
            assert o.supervisions[0].duration == pytest.approx(o.duration, abs=2e-3)
        # the stored features follow the new duration
        x_in, x_out = cuts[0].load_audio()[0], out[0].load_audio()[0]
        assert fbank(x_out, RATE).shape[0] == pytest.approx(fbank(x_in, RATE).shape[0] / factor,
                                                            abs=2)


def test_noise_mixing_hits_the_snr_asked_within_1_db(wave_cuts):
    cuts, noises, _ = wave_cuts
    for snr in (0.0, 7.5, 20.0):
        out, info = augmented_copy(cuts, [1.0], noises=list(noises), noise_prob=1.0,
                                   snr_range=(snr, snr), seed=3)
        for o, d in zip(out, info):
            mixed = o.load_audio()[0].astype(np.float64)
            clean = o.tracks[0].cut.load_audio()[0].astype(np.float64)
            noise = mixed - clean
            measured = 10 * np.log10((clean ** 2).sum() / (noise ** 2).sum())
            assert abs(measured - snr) < 1.0, (d, measured)


def test_augmented_copy_draws_per_cut_and_is_reproducible(wave_cuts):
    cuts, noises, rirs = wave_cuts
    big = [c.with_id(f"{c.id}-{k}") for k in range(30) for c in cuts]
    a, ia = augmented_copy(big, [0.9, 1.0, 1.1], list(rirs), 0.5, list(noises), 0.5,
                           (0, 20), seed=7)
    b, ib = augmented_copy(big, [0.9, 1.0, 1.1], list(rirs), 0.5, list(noises), 0.5,
                           (0, 20), seed=7)
    assert ia == ib
    assert {d["speed"] for d in ia} == {0.9, 1.0, 1.1}
    rvb = sum("rir" in d for d in ia)
    noisy = sum("noise" in d for d in ia)
    assert 20 < rvb < 70 and 20 < noisy < 70  # about half of 90
    assert all(0 <= d["snr"] <= 20 for d in ia if "noise" in d)
    with pytest.raises(ValueError, match="RIR"):
        augmented_copy(big, rvb_prob=0.5)
    with pytest.raises(ValueError, match="positive"):
        parse_factors("0.9,0")


def test_training_noise_never_has_a_held_out_kind(wave_cuts, tmp_path):
    from speechmoe.data.rir import HELDOUT_NOISE_KINDS, TRAIN_NOISE_KINDS, training_noise_bank

    _, noises, _ = wave_cuts
    kinds = {r.id.split("-")[1] for r in noises}
    assert kinds == set(TRAIN_NOISE_KINDS)
    assert not kinds & set(HELDOUT_NOISE_KINDS)
    with pytest.raises(ValueError, match="held out"):
        training_noise_bank(tmp_path, 1, 1.0, 0, kinds=("babble", "white"))
    for rec in noises:
        x = rec.load_audio()[0]
        assert x.shape[0] == 5 * RATE and 0.4 < np.abs(x).max() <= 0.5 + 1e-6


def test_noise_dir_reads_a_musan_layout(tmp_path):
    import soundfile as sf

    from speechmoe.data.rir import noise_dir_recordings

    for sub, rate in (("noise/free-sound", 16000), ("music/jamendo", 8000)):
        (tmp_path / sub).mkdir(parents=True)
        sf.write(tmp_path / sub / "a.wav", np.zeros(rate, dtype=np.float32) + 0.1, rate)
    recs = noise_dir_recordings([tmp_path / "noise", tmp_path / "music"])
    assert sorted(r.id for r in recs) == ["noise-free-sound-a", "noise-jamendo-a"]
    assert all(r.sampling_rate == 16000 for r in recs)
    with pytest.raises(FileNotFoundError, match="not found"):
        noise_dir_recordings([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .wav"):
        noise_dir_recordings([tmp_path / "empty"])


# ----------------------------------------------------------------------------- tempo (WSOLA)

def frame_rms(x: np.ndarray, frame: int = 400) -> np.ndarray:
    n = len(x) // frame
    return np.sqrt((x[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1))


@pytest.mark.parametrize("factor", [0.8, 1.1, 1.3])
def test_wsola_changes_duration_and_keeps_pitch_and_level(factor):
    """A steady 120 Hz voice (8 harmonics): WSOLA keeps its F0 (speed perturbation would
    move it to 120 x factor) and its level in every 25 ms frame: the copied periods line
    up across each overlap, where overlap-add at the nominal positions alone would cancel
    them in places."""
    from speechmoe.data.tempo import tempo_num_samples, wsola

    x, _ = harmonic_glide(120.0, 120.0, 2.0)
    y = wsola(x, factor, RATE)
    assert len(y) == tempo_num_samples(len(x), factor) == round(len(x) / factor)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spec) * RATE / len(y) == pytest.approx(120.0, abs=1.5)
    rms_in, rms_out = frame_rms(x)[1:-1].mean(), frame_rms(y)[1:-1]
    assert rms_out.min() > 0.9 * rms_in and rms_out.max() < 1.1 * rms_in


def test_wsola_identity_and_bad_factors():
    from speechmoe.data.tempo import wsola

    x, _ = harmonic_glide(100.0, 150.0, 0.5)
    assert np.array_equal(wsola(x, 1.0), x)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive"):
            wsola(x, bad)


def test_tempo_copy_changes_duration_keeps_labels_and_reloads(wave_cuts, tmp_path):
    from lhotse import CutSet

    cuts = wave_cuts[0]
    with pytest.raises(ValueError, match="audio_dir"):
        augmented_copy(cuts, [1.0], tempos=[1.25])
    out, info = augmented_copy(cuts, [1.0], tempos=[1.25], audio_dir=tmp_path / "tp", seed=0)
    for c, o, d in zip(cuts, out, info):
        assert d["tempo"] == 1.25 and o.id == f"{c.id}_aug"
        assert (tmp_path / "tp" / f"{c.id}_aug_tp1.25.flac").is_file()
        assert o.duration == pytest.approx(c.duration / 1.25, abs=1e-3)
        assert o.load_audio().shape[1] == round(c.num_samples / 1.25)
        assert [s.text for s in o.supervisions] == [s.text for s in c.supervisions]
        assert o.supervisions[0].duration == pytest.approx(o.duration, abs=1e-3)
    # the manifest is plain lhotse: it reloads without importing speechmoe's transforms
    out.to_file(tmp_path / "cuts.jsonl.gz")
    back = CutSet.from_file(tmp_path / "cuts.jsonl.gz")
    assert back[0].load_audio().shape == out[0].load_audio().shape
    # tempo 1.0 draws nothing: the copy is the one made without the option
    same, _ = augmented_copy(cuts, [0.9, 1.1], seed=4)
    also, _ = augmented_copy(cuts, [0.9, 1.1], seed=4, tempos=[1.0])
    assert [c.duration for c in same] == [c.duration for c in also]
