"""Front end: fbank backends, Kaldi deltas, frame stacking, global CMVN."""

import numpy as np
import pytest
import torch

from speechmoe.features import (FeatureConfig, GlobalCMVN, _delta_scales, add_deltas,
                                compute_features, fbank, have_kaldifeat, stack_and_subsample)


def tone(seconds=1.5, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 2 * t)
            + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def test_kaldi_delta_filters_by_hand():
    first, second = _delta_scales(2, 2)[1:]
    assert torch.allclose(first, torch.tensor([-2, -1, 0, 1, 2], dtype=torch.float64) / 10)
    # second order = first order convolved with itself
    expected = np.convolve([-2, -1, 0, 1, 2], [-2, -1, 0, 1, 2]) / 100
    assert torch.allclose(second, torch.tensor(expected))


def test_deltas_of_a_ramp_and_a_parabola():
    t = torch.arange(20, dtype=torch.float32)[:, None]
    ramp = add_deltas(3 * t + 1)
    assert ramp.shape == (20, 3)
    assert torch.allclose(ramp[4:-4, 1], torch.full((12,), 3.0))  # slope
    assert torch.allclose(ramp[4:-4, 2], torch.zeros(12), atol=1e-5)
    parab = add_deltas(t ** 2)
    # d/dt of t^2 is 2t; the second-order filter of t^2 gives a constant 2
    assert torch.allclose(parab[4:-4, 1], 2 * t[4:-4, 0], atol=1e-4)
    assert torch.allclose(parab[4:-4, 2], torch.full((12,), 2.0), atol=1e-4)
    # edges replicate the first / last frame
    const = add_deltas(torch.ones(5, 2))
    assert torch.allclose(const[:, 2:], torch.zeros(5, 4), atol=1e-6)


def test_stack_and_subsample_positions():
    x = torch.arange(10, dtype=torch.float32)[:, None]  # frame index as the feature
    y = stack_and_subsample(x, stack=8, subsample=3)
    assert y.shape == (4, 8)  # ceil(10 / 3)
    assert y[0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]  # frames -3..4 clamped
    assert y[1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert y[3].tolist() == [6, 7, 8, 9, 9, 9, 9, 9]


def test_one_second_gives_about_33_model_frames_of_960_dims():
    cfg = FeatureConfig()
    feats = compute_features(tone(1.0), 16000, cfg, backend="lhotse")
    assert feats.shape == (34, 960)  # 100 fbank frames -> ceil(100 / 3)
    assert cfg.model_dim == 960


@pytest.mark.skipif(not have_kaldifeat(), reason="kaldifeat is not installed")
def test_kaldifeat_and_lhotse_fbank_agree():
    wave = tone()
    a = fbank(wave, 16000, backend="kaldifeat")
    b = fbank(wave, 16000, backend="lhotse")
    assert a.shape == b.shape == (150, 40)
    assert (a - b).abs().max().item() < 1e-3


def test_fbank_rejects_wrong_rate_and_stereo():
    with pytest.raises(ValueError, match="8000 Hz"):
        fbank(tone(), 8000)
    with pytest.raises(ValueError, match="mono"):
        fbank(np.zeros((2, 16000), dtype=np.float32), 16000)


def test_global_cmvn_normalises_and_round_trips(tmp_path):
    torch.manual_seed(0)
    data = [torch.randn(50, 4) * torch.tensor([1.0, 2, 3, 4]) + 5 for _ in range(3)]
    cmvn = GlobalCMVN(4)
    for d in data:
        cmvn.accumulate(d)
    normed = cmvn.normalize(torch.cat(data))
    assert torch.allclose(normed.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(normed.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    cmvn.save(tmp_path / "cmvn.pt")
    loaded = GlobalCMVN.load(tmp_path / "cmvn.pt")
    assert loaded.count == 150 and torch.allclose(loaded.mean, cmvn.mean)


def test_cmvn_load_refuses_foreign_and_truncated_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"sum": Evil()}, evil)
    with pytest.raises(ValueError, match="weights_only"):
        GlobalCMVN.load(evil)
    good = tmp_path / "good.pt"
    c = GlobalCMVN(2)
    c.accumulate(torch.ones(3, 2))
    c.save(good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.pt"):
        GlobalCMVN.load(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        GlobalCMVN.load(tmp_path / "missing.pt")


def test_cmvn_load_refuses_statistics_of_another_front_end(tmp_path):
    c = GlobalCMVN(120)  # 40 Mel bins with deltas and accelerations
    c.accumulate(torch.ones(3, 120))
    c.save(tmp_path / "cmvn.pt")
    assert GlobalCMVN.load(tmp_path / "cmvn.pt", FeatureConfig()).count == 3
    with pytest.raises(ValueError, match=r"cmvn.pt: statistics of 120 dims.* have 240"):
        GlobalCMVN.load(tmp_path / "cmvn.pt", FeatureConfig(num_mel_bins=80))


def test_feature_check_refuses_bands_kaldifeat_cannot_make():
    """At 16 kHz, a 25 ms frame (512-point FFT) and low_freq 20, kaldifeat builds 125 Mel
    bands and aborts the process on 130 ("You may have set num_mel_bins too large", seen
    in a subprocess when this check was written): check() draws the same line, with a
    ValueError. Ranges outside (0, Nyquist] are refused too."""
    assert FeatureConfig(num_mel_bins=125).check().num_mel_bins == 125
    assert FeatureConfig(num_mel_bins=80, high_freq=-400.0).check()
    with pytest.raises(ValueError, match="holds no FFT bin"):
        FeatureConfig(num_mel_bins=130).check()
    assert FeatureConfig(num_mel_bins=130, low_freq=60.0).check()  # wider low bands
    for bad in (dict(num_mel_bins=0), dict(low_freq=-1.0), dict(high_freq=9000.0),
                dict(low_freq=4000.0, high_freq=3000.0), dict(high_freq=-8000.0)):
        with pytest.raises(ValueError):
            FeatureConfig(**bad).check()
    fb = fbank(np.zeros(16000, dtype=np.float32) + 0.01, 16000, FeatureConfig(num_mel_bins=125))
    assert fb.shape == (100, 125)
