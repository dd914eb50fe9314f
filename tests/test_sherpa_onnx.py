"""The sherpa-onnx export (speechmoe/sherpa.py): the front end in the graph gives the
toolkit's log-probs from the same fbank, batched or not, and sherpa-onnx's own recognizer
(its kaldi-native-fbank, its padding, its greedy CTC) finds the toolkit's tokens."""

import json
from functools import lru_cache

import numpy as np
import pytest
import torch

from speechmoe.config import ModelConfig
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.features import (FeatureConfig, GlobalCMVN, add_deltas, base_features,
                                compute_features, fbank, stack_and_subsample)
from speechmoe.inference import inference_module
from speechmoe.model import build_model
from speechmoe.sherpa import (PAD_VALUE, SHERPA_JSON, SherpaCtcModel, export_sherpa_onnx,
                              fbank_options, pitch_fill)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning",
                                        "ignore::DeprecationWarning")

RATE = 16000
SCALE = 0.7


def voice(seed: int, seconds: float) -> np.ndarray:
    """A gliding harmonic voice, amplitude-modulated, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(120 + 60 * np.sin(2 * np.pi * 1.3 * t + seed)) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.2 + 0.2 * np.sin(4.2 * np.pi * t))
    x = x + 0.02 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


WAVES = [voice(1, 1.3), voice(2, 0.83), voice(3, 2.0)]


@lru_cache(maxsize=2)
def system(pitch: bool):
    """A tiny random SpeechMoE (2 experts, the embedding network) and CMVN of WAVES. The
    output layer is scaled up so that each frame's best token wins by a clear margin
    (greedy tokens then do not hinge on 1e-5 differences between fbank libraries).
    Shared by the tests, which only read it."""
    cfg = FeatureConfig(pitch=pitch)
    cmvn = GlobalCMVN(cfg.base_dim)
    for w in WAVES:
        cmvn.accumulate(add_deltas(base_features(w, RATE, cfg)))
    torch.manual_seed(0)
    model = build_model(ModelConfig(
        num_classes=40, d_model=32, ffn_dim=64, attention_ffn_dim=64, attention_heads=2,
        num_layers=2, attention_every=2, num_experts=2, embedding_layers=1,
        input_dim=cfg.model_dim)).eval()
    with torch.no_grad():
        model.output_layer.weight.mul_(4.0)
    return model, cfg, cmvn


def toolkit_log_probs(model, cfg, cmvn, feats_2d, fill):
    """The toolkit's pipeline after the fbank: [constant pitch], deltas, CMVN, stacking."""
    if cfg.pitch:
        feats_2d = torch.cat([feats_2d, torch.tensor(fill).expand(len(feats_2d), -1)], 1)
    x = stack_and_subsample(cmvn.normalize(add_deltas(feats_2d, cfg.delta_order,
                                                      cfg.delta_window)),
                            cfg.stack, cfg.subsample)
    with torch.no_grad():
        return inference_module(model)(x[None], torch.tensor([len(x)]))[0][0]


@pytest.mark.parametrize("pitch", [False, True])
def test_wrapper_gives_the_toolkit_log_probs_from_the_same_fbank(pitch):
    model, cfg, cmvn = system(pitch)
    fill = pitch_fill(cfg, cmvn, "mean")
    wrapper = SherpaCtcModel(model, cfg, cmvn, SCALE, fill)
    for w in WAVES:
        fb = fbank(w, RATE, cfg)
        ref = toolkit_log_probs(model, cfg, cmvn, fb, fill)
        if not pitch:  # the same features as the toolkit's own front end
            x = compute_features(w, RATE, cfg, cmvn)
            assert torch.allclose(x, stack_and_subsample(cmvn.normalize(add_deltas(fb))))
        with torch.no_grad():
            got, n = wrapper(fb[None], torch.tensor([len(fb)]))
        assert n.tolist() == [len(ref)] and n.dtype == torch.int64
        torch.testing.assert_close(got[0], ref * SCALE, atol=2e-5, rtol=0)


def test_a_batch_padded_as_sherpa_onnx_pads_it_equals_one_by_one():
    model, cfg, cmvn = system(True)
    wrapper = SherpaCtcModel(model, cfg, cmvn, SCALE, pitch_fill(cfg, cmvn))
    fbs = [fbank(w, RATE, cfg) for w in WAVES[:2]]
    x = torch.nn.utils.rnn.pad_sequence(fbs, batch_first=True, padding_value=PAD_VALUE)
    with torch.no_grad():
        batch, lengths = wrapper(x, torch.tensor([len(f) for f in fbs]))
        for i, f in enumerate(fbs):
            one, n = wrapper(f[None], torch.tensor([len(f)]))
            assert lengths[i] == n[0] == one.shape[1]
            torch.testing.assert_close(batch[i, :n[0]], one[0], atol=2e-5, rtol=0)


def test_pitch_fills():
    """"mean" puts the static pitch dims at 0 after CMVN; "unvoiced" is [0, 0]; a model
    without pitch has none."""
    model, cfg, cmvn = system(True)
    assert pitch_fill(cfg, cmvn, "unvoiced") == [0.0, 0.0]
    assert pitch_fill(FeatureConfig(), GlobalCMVN(120)) is None
    with pytest.raises(ValueError, match="pitch fill"):
        pitch_fill(cfg, cmvn, "zero")
    wrapper = SherpaCtcModel(model, cfg, cmvn, 1.0, pitch_fill(cfg, cmvn, "mean"))
    fb = fbank(WAVES[0], RATE, cfg)
    x, _ = wrapper.features(fb[None], torch.tensor([len(fb)]))
    frame = x[0].reshape(len(x[0]), cfg.stack, cfg.delta_order + 1, cfg.stored_dim)
    assert frame[..., 0, cfg.num_mel_bins:].abs().max() < 1e-5


def test_constant_pitch_input_is_what_the_export_feeds_the_network():
    """ConstantPitchInput on the toolkit's features with real pitch gives the log-probs of
    the fbank with the constant pitch appended before deltas and CMVN (what the sherpa-onnx
    export computes), and differs from the real-pitch ones."""
    from speechmoe.sherpa import ConstantPitchInput

    model, cfg, cmvn = system(True)
    for how in ("mean", "unvoiced"):
        fill = pitch_fill(cfg, cmvn, how)
        wrapped = inference_module(ConstantPitchInput(model, cfg, cmvn, fill))
        for w in WAVES[:2]:
            x = compute_features(w, RATE, cfg, cmvn)  # real pitch
            with torch.no_grad():
                got = wrapped(x[None], torch.tensor([len(x)]))[0][0]
                real = inference_module(model)(x[None], torch.tensor([len(x)]))[0][0]
            want = toolkit_log_probs(model, cfg, cmvn, fbank(w, RATE, cfg), fill)
            torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
            assert (got - real).abs().max() > 1e-3
    with pytest.raises(ValueError, match="pitch model"):
        ConstantPitchInput(model, FeatureConfig(), cmvn, [0.0, 0.0])


def test_a_pitch_model_is_exported_only_with_its_cost_said(tmp_path):
    """No silent loss: a pitch model's sherpa-onnx export is refused without a measured
    cost; with one, sherpa-onnx.json and README.md carry it; unmeasured on purpose, the
    README says that the cost is unknown."""
    pytest.importorskip("onnx")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blk> 0\n" + "".join(f"t{i} {i}\n" for i in range(1, 40)))
    model, cfg, cmvn = system(True)
    with pytest.raises(ValueError, match="trained with pitch"):
        export_sherpa_onnx(model, cfg, cmvn, tmp_path / "refused", tokens)
    assert not (tmp_path / "refused").exists()
    cost = {"set": "cuts_dev.jsonl.gz", "metric": "CER", "utterances": 300,
            "ref_tokens": 2656, "real_pitch": 5.05, "constant_pitch": 15.29}
    out = export_sherpa_onnx(model, cfg, cmvn, tmp_path / "measured", tokens,
                             pitch_cost=cost)
    settings = json.loads((out / SHERPA_JSON).read_text())
    assert settings["pitch"]["cost"] == cost and settings["pitch"]["trained_with"]
    readme = (out / "README.md").read_text()
    assert "less accurate" in readme and "5.05% with real pitch" in readme
    assert "15.29% with this export's constant pitch" in readme and "2656" in readme
    out = export_sherpa_onnx(model, cfg, cmvn, tmp_path / "unmeasured", tokens,
                             unmeasured_pitch=True)
    assert json.loads((out / SHERPA_JSON).read_text())["pitch"]["cost"] is None
    assert "was not measured" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="has none"):
        export_sherpa_onnx(system(False)[0], FeatureConfig(), system(False)[2],
                           tmp_path / "nopitch", tokens, pitch_cost=cost)


def test_fbank_options_and_what_the_c_api_can_set():
    ours = fbank_options(FeatureConfig())
    assert ours["feature_extractor"] == {
        "sampling_rate": 16000, "feature_dim": 40, "low_freq": 20.0, "high_freq": 0.0,
        "dither": 0.0, "snip_edges": False, "normalize_samples": True}
    assert ours["c_api_differs_in"] == ["high_freq"] and not ours["c_api_matches"]
    assert fbank_options(FeatureConfig(high_freq=-400.0))["c_api_matches"]
    with pytest.raises(ValueError, match="25 ms"):
        fbank_options(FeatureConfig(frame_length_ms=20.0))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model without pitch exported once (tokens.txt with a disambiguation line, which
    the export leaves out)."""
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("sherpa")
    tokens = root / "tokens.txt"
    tokens.write_text("<blk> 0\n" + "".join(f"t{i} {i}\n" for i in range(1, 40)) + "#0 40\n")
    model, cfg, cmvn = system(False)
    out = export_sherpa_onnx(model, cfg, cmvn, root / "sherpa-onnx", tokens,
                             acoustic_scale=SCALE)
    return out, model, cfg, cmvn


def test_the_exported_directory_meets_the_zipformer_ctc_contract(exported):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from speechmoe.utils import sha256

    out, model, cfg, cmvn = exported
    settings = json.loads((out / SHERPA_JSON).read_text())
    assert sorted(settings["files"]) == ["README.md", "model.onnx", "tokens.txt"]
    assert all(sha256(out / f) == v["sha256"] for f, v in settings["files"].items())
    assert settings["acoustic_scale"] == SCALE and settings["timestamp_factor"] == 0.75
    assert (out / "tokens.txt").read_text().splitlines()[-1] == "t39 39"
    proto = onnx.load(str(out / "model.onnx"))
    assert {p.key for p in proto.metadata_props} >= {"fbank", "acoustic_scale", "vocab_size"}
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in sess.get_inputs()] == [("x", "tensor(float)"),
                                                             ("x_lens", "tensor(int64)")]
    (lp, lp_len) = sess.get_outputs()
    assert (lp.name, lp.shape[2], lp_len.name, lp_len.type) == \
        ("log_probs", 40, "log_probs_len", "tensor(int64)")  # V fixed: sherpa-onnx reads it
    fbs = [fbank(w, RATE, cfg) for w in WAVES]
    x = torch.nn.utils.rnn.pad_sequence(fbs, batch_first=True, padding_value=PAD_VALUE)
    lengths = torch.tensor([len(f) for f in fbs])
    got, got_len = sess.run(None, {"x": x.numpy(), "x_lens": lengths.numpy()})
    wrapper = SherpaCtcModel(model, cfg, cmvn, SCALE)
    with torch.no_grad():
        ref, ref_len = wrapper(x, lengths)
    assert got_len.tolist() == ref_len.tolist()
    for i, n in enumerate(ref_len.tolist()):
        np.testing.assert_allclose(got[i, :n], ref[i, :n].numpy(), atol=2e-5)


def test_sherpa_onnx_finds_the_toolkits_greedy_tokens(exported):
    pytest.importorskip("sherpa_onnx", reason="sherpa-onnx not installed "
                        "(pip install sherpa-onnx; requirements.txt pins it)")
    from speechmoe.sherpa import sherpa_recognizer

    out, model, cfg, cmvn = exported
    rec = sherpa_recognizer(out)
    streams = []
    for w in WAVES:
        s = rec.create_stream()
        s.accept_waveform(RATE, w)
        streams.append(s)
    rec.decode_streams(streams)  # one padded batch
    for w, s in zip(WAVES, streams):
        x = compute_features(w, RATE, cfg, cmvn)  # the toolkit's own fbank (kaldifeat)
        with torch.no_grad():
            lp = inference_module(model)(x[None], torch.tensor([len(x)]))[0][0]
        want = [f"t{i}" for i in ctc_greedy(lp)[0]]
        assert len(want) >= 10 and list(s.result.tokens) == want
        one = rec.create_stream()
        one.accept_waveform(RATE, w)
        rec.decode_stream(one)
        assert list(one.result.tokens) == want


def test_sherpa_transcribe_reads_files_as_the_toolkit_does(exported, tmp_path):
    """sherpa_transcribe (what the results scripts decode dev with): one file at a time,
    read with the toolkit's read_audio (a 44.1 kHz stereo copy resampled to 16 kHz mono),
    the tokens the recognizer finds in the samples themselves."""
    pytest.importorskip("sherpa_onnx")
    import soundfile as sf
    from scipy.signal import resample_poly

    from speechmoe.sherpa import sherpa_recognizer, sherpa_transcribe

    out = exported[0]
    files = []
    for i, w in enumerate(WAVES):
        sf.write(tmp_path / f"{i}.wav", w, RATE)
        files.append(tmp_path / f"{i}.wav")
    up = resample_poly(WAVES[0], 441, 160).astype(np.float32)
    sf.write(tmp_path / "stereo44k.wav", np.stack([up, up], axis=1), 44100)
    got = list(sherpa_transcribe(out, files + [tmp_path / "stereo44k.wav"]))
    rec = sherpa_recognizer(out)
    for f, tokens in zip(files, got):
        s = rec.create_stream()
        s.accept_waveform(RATE, sf.read(f, dtype="float32")[0])
        rec.decode_stream(s)
        assert tokens == list(s.result.tokens) and len(tokens) >= 10
    assert len(got) == 4 and len(got[-1]) >= 10
    with pytest.raises(ValueError, match="exported without a graph"):
        next(sherpa_transcribe(out, files, method="wfst"))


def test_with_graph_links_the_directory_with_another_graph(tmp_path):
    from speechmoe.sherpa import with_graph

    d = tmp_path / "sherpa-onnx"
    d.mkdir()
    (d / SHERPA_JSON).write_text(json.dumps({"decoding": {"method": "wfst",
                                                          "graph": "TLG.fst"}}))
    for f in ("TLG.fst", "model.onnx", "tokens.txt"):
        (d / f).write_text(f)
    (tmp_path / "other.fst").write_text("other")
    swapped = with_graph(d, tmp_path / "other.fst", tmp_path / "swapped")
    assert sorted(p.name for p in swapped.iterdir()) == sorted(p.name for p in d.iterdir())
    assert (swapped / "TLG.fst").read_text() == "other"
    assert (swapped / "model.onnx").resolve() == (d / "model.onnx").resolve()
