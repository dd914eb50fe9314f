"""Deployment with sherpa-onnx: the model as one of its offline CTC models (`zipformer_ctc`).

    from speechmoe.sherpa import export_sherpa_onnx, sherpa_recognizer

    build_token_start_tlg("data/lang", "sherpa-TLG.fst")  # speechmoe.lang.token_start
    export_sherpa_onnx(model, features, cmvn, "exp/moe_4e/export/sherpa-onnx",
                       tokens="data/lang/tokens.txt", graph="sherpa-TLG.fst",
                       words="data/lang/words.txt", acoustic_scale=0.7)
    rec = sherpa_recognizer("exp/moe_4e/export/sherpa-onnx")   # sherpa_onnx.OfflineRecognizer
    for words in sherpa_transcribe("exp/moe_4e/export/sherpa-onnx", ["a.wav", "b.wav"]):
        print(" ".join(words))

sherpa-onnx computes the log-Mel fbank itself (kaldi-native-fbank) and hands the network
`x` (N, T, num_mel_bins) float32 and `x_lens` (N,) int64, the batch padded with
log(1e-10); it reads `log_probs` (N, T', V) and `log_probs_len` (N,) int64 back, with V
fixed in the graph. Everything between (SherpaCtcModel) is in model.onnx:

    fbank (N, T, 40) [--constant pitch--> (N, T, 42)] --deltas--> --global CMVN-->
        --stack 8, keep every 3rd--> (N, ceil(T/3), 960 [1008]) --SpeechMoE--> log_probs
        * acoustic_scale

the deltas and the stacking replicating each utterance's own last frame, as the toolkit
does per utterance (so the padding never reaches a real frame). sherpa-onnx's graph
decoder (kaldi-decoder's FasterDecoder, beam 16) has no acoustic scale: the tuned one is
folded into the log-probs (greedy decoding does not change with it). It reads a word
only on an arc that starts a new token, so the graph is not data/lang/TLG.fst (whose
determinization moves homophones' words to their word-end arcs, which sherpa-onnx skips)
but build_token_start_tlg's, with every word on its last token.

sherpa-onnx computes no pitch. A model trained with pitch (FeatureConfig.pitch) gets two
constant columns in place of the pitch features: "mean" (the default), the training
set's mean of each pitch dim from the CMVN statistics, so that after normalisation the
pitch dims read 0, the training average ("no information"); or "unvoiced", voicing 0 and
0 semitones from the speaker's mean, what the toolkit's pitch() gives for audio without
a periodic stretch. Either way the model never sees tones it was trained to hear from
pitch, so a pitch model is exported only with what that costs (constant_pitch_cost: the
error rate on a dev set with real and with constant pitch, written into sherpa-onnx.json
and README.md) or, on purpose, unmeasured; a model trained without pitch loses nothing.

The fbank options a device build can set (SPEC.md section 7): Python's
sherpa_onnx.FeatureExtractorConfig sets feature_dim, low/high_freq, dither, snip_edges and
normalize_samples; the C and C++ APIs (what phones and browsers use) only
sample_rate and feature_dim, the rest staying at low_freq 20, high_freq -400, dither 0,
snip_edges false, samples in [-1, 1]. The toolkit's fbank uses high_freq 0 (Nyquist): on
such an API the top Mel bands differ (by up to ~3.3 in log energy) unless the model was
trained with features.json high_freq -400. The frame length and shift are fixed at 25 /
10 ms. `fbank_options` says which; sherpa-onnx.json in the directory records them.

sherpa-onnx's timestamps assume a zipformer's 40 ms output frames: ours are 30 ms
(frame_shift * subsample), so multiply its timestamps by 0.75.

onnx, onnxruntime and sherpa_onnx are imported only by the functions that use them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from speechmoe.data.audio import read_audio
# _delta_scales: Kaldi's delta filters, the ones add_deltas applies
from speechmoe.features import (PITCH_DIMS, FeatureConfig, GlobalCMVN, _delta_scales,
                                add_deltas)
from speechmoe.lang.symbols import num_real_tokens, read_tokens, read_words
from speechmoe.model_dir import write_manifest
from speechmoe.utils import atomic_dir, atomic_path, atomic_write_text

SHERPA_JSON = "sherpa-onnx.json"
MODEL_TYPE = "zipformer_ctc"  # the sherpa-onnx offline CTC type whose contract we meet
# what sherpa-onnx pads a batch's fbank with: log(1e-10)
PAD_VALUE = -23.025850929940457
# sherpa-onnx's defaults where an API cannot set them (C / C++ API: sample_rate, feature_dim)
SHERPA_DEFAULTS = {"low_freq": 20.0, "high_freq": -400.0, "dither": 0.0, "snip_edges": False,
                   "normalize_samples": True}
PITCH_FILLS = ("mean", "unvoiced")
SHERPA_SUBSAMPLING = 4  # what sherpa-onnx's zipformer_ctc assumes for timestamps


def fbank_options(cfg: FeatureConfig) -> dict:
    """The sherpa_onnx.FeatureExtractorConfig that computes cfg's fbank, and whether a build
    that sets only sample_rate and feature_dim (the C / C++ APIs) computes the same.

    Raises ValueError for options sherpa-onnx cannot set at all (frame length / shift)."""
    if (cfg.frame_length_ms, cfg.frame_shift_ms) != (25.0, 10.0):
        raise ValueError(f"sherpa-onnx's fbank has 25 ms frames every 10 ms, the model's "
                         f"features {cfg.frame_length_ms} / {cfg.frame_shift_ms} ms")
    opts = {"sampling_rate": int(cfg.sample_rate), "feature_dim": int(cfg.num_mel_bins),
            "low_freq": float(cfg.low_freq), "high_freq": float(cfg.high_freq),
            "dither": 0.0,  # the toolkit's features are never dithered
            "snip_edges": bool(cfg.snip_edges),
            "normalize_samples": True}  # samples in [-1, 1], as the toolkit's fbank
    differ = sorted(k for k, v in SHERPA_DEFAULTS.items() if opts[k] != v)
    return {"feature_extractor": opts, "c_api_matches": not differ,
            "c_api_differs_in": differ}


def pitch_fill(cfg: FeatureConfig, cmvn: GlobalCMVN, how: str = "mean") -> Optional[list]:
    """The constant pitch features standing in for sherpa-onnx's missing pitch (None for a
    model without pitch): "mean", the CMVN mean of each pitch dim (0 after normalisation);
    "unvoiced", [voicing 0, 0 semitones]."""
    if not cfg.pitch:
        return None
    if how == "mean":
        return cmvn.mean[cfg.num_mel_bins:cfg.stored_dim].tolist()
    if how == "unvoiced":
        return [0.0] * PITCH_DIMS
    raise ValueError(f"unknown pitch fill {how!r}; use one of {PITCH_FILLS}")


class ConstantPitchInput(nn.Module):
    """A pitch model whose input's pitch columns (the static ones and their deltas, in every
    stacked frame) hold what constant pitch ``fill`` gives after deltas and global CMVN:
    the network input of its sherpa-onnx export, made from the toolkit's stored features
    (to measure what constant pitch costs: constant_pitch_cost). Called as the model is,
    its output is the model's."""

    def __init__(self, model: nn.Module, cfg: FeatureConfig, cmvn: GlobalCMVN,
                 fill: Sequence[float]):
        super().__init__()
        if not cfg.pitch or len(fill) != PITCH_DIMS:
            raise ValueError(f"constant pitch needs a pitch model and {PITCH_DIMS} values, "
                             f"got pitch={cfg.pitch} and {list(fill)}")
        # a constant stretch: its deltas are 0, its static pitch the fill
        frames = torch.cat([torch.zeros(3, cfg.num_mel_bins),
                            torch.tensor(list(fill), dtype=torch.float32).expand(3, -1)], 1)
        normalized = cmvn.normalize(add_deltas(frames, cfg.delta_order, cfg.delta_window))[0]
        mask = torch.zeros(cfg.base_dim, dtype=torch.bool)
        for k in range(cfg.delta_order + 1):  # [static, delta, delta-delta], each stored_dim
            mask[k * cfg.stored_dim + cfg.num_mel_bins:(k + 1) * cfg.stored_dim] = True
        index = mask.repeat(cfg.stack).nonzero().squeeze(1)
        self.model = model
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("values", normalized.repeat(cfg.stack)[index], persistent=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, *args):
        x = x.clone()
        x[..., self.index] = self.values.to(x.dtype)
        return self.model(x, lengths, *args)


def constant_pitch_cost(model: nn.Module, cfg: FeatureConfig, cmvn: GlobalCMVN, cuts,
                        fill: Sequence[float], decode, refs: dict, metric: str,
                        max_duration: float = 120.0) -> dict:
    """What holding a pitch model's pitch at ``fill`` (its sherpa-onnx export) costs on a
    set: the error rate of decode(log_probs) -> tokens on the cuts' stored features, with
    their real pitch and with the constant, against refs {cut id: tokens} (an utterance
    without a hypothesis, or an empty set, is an error: speechmoe.scoring.score).

    Returns {"metric", "utterances", "ref_tokens", "real_pitch", "constant_pitch"} (rates
    in percent)."""
    from speechmoe.decode.posteriors import posteriors
    from speechmoe.scoring import score

    out = {"metric": metric}
    for name, m in (("real_pitch", model),
                    ("constant_pitch", ConstantPitchInput(model, cfg, cmvn, fill))):
        hyps = {cut_id: decode(lp) for cut_id, lp in
                posteriors(m, cuts, cmvn, max_duration, feature_config=cfg)}
        stats = score(refs, hyps)
        out.update(utterances=stats.utts, ref_tokens=stats.ref_len)
        out[name] = round(stats.rate, 2)
    return out


def _gather_frames(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (N, T, D), index (N, T', K) frame numbers -> (N, T', K, D)."""
    N, T1, K = index.shape
    flat = index.reshape(N, T1 * K, 1).expand(N, T1 * K, x.shape[-1])
    return torch.gather(x, 1, flat).reshape(N, T1, K, x.shape[-1])


class SherpaCtcModel(nn.Module):
    """fbank (N, T, num_mel_bins), lengths (N,) -> (log_probs * scale (N, T', V), T' (N,)):
    the toolkit's front end (features.compute_features after the fbank) and the model in
    one module. Each utterance's frames beyond its length are never read: every frame
    index is clamped to [0, length - 1], the edge replication of add_deltas and
    stack_and_subsample."""

    def __init__(self, model: nn.Module, cfg: FeatureConfig, cmvn: GlobalCMVN,
                 acoustic_scale: float = 1.0, pitch: Optional[Sequence[float]] = None):
        super().__init__()
        if cmvn.sum.numel() != cfg.base_dim:
            raise ValueError(f"CMVN has {cmvn.sum.numel()} dims, the features "
                             f"{cfg.base_dim} (fbank [+ pitch] with deltas)")
        if cfg.pitch and (pitch is None or len(pitch) != PITCH_DIMS):
            raise ValueError(f"a model with pitch needs {PITCH_DIMS} constant pitch values "
                             "(pitch_fill)")
        if not acoustic_scale > 0:
            raise ValueError(f"acoustic scale {acoustic_scale}: must be > 0")
        self.model = model.eval()
        self.num_mel_bins, self.stack, self.subsample = (cfg.num_mel_bins, cfg.stack,
                                                         cfg.subsample)
        self.scale = float(acoustic_scale)
        self.register_buffer("pitch", torch.tensor(list(pitch) if cfg.pitch else [],
                                                   dtype=torch.float32))
        # Kaldi's delta filters, each centred in K = 2 * order * window + 1 taps
        scales = _delta_scales(cfg.delta_order, cfg.delta_window)
        K = scales[-1].numel()
        taps = torch.zeros(len(scales), K, dtype=torch.float64)
        for k, s in enumerate(scales):
            off = (K - s.numel()) // 2
            taps[k, off:off + s.numel()] = s
        self.register_buffer("taps", taps.float())
        self.register_buffer("offsets", torch.arange(K) - (K - 1) // 2)
        # float32 mean and std, as GlobalCMVN.normalize applies them
        self.register_buffer("mean", cmvn.mean.float())
        self.register_buffer("std", cmvn.std.float())
        left = (cfg.stack - 1) // 2
        self.register_buffer("context", torch.arange(-left, cfg.stack - left))

    def features(self, x: torch.Tensor, x_lens: torch.Tensor):
        """The model input (N, ceil(T / subsample), model_dim) and its lengths."""
        N, T, _ = x.shape
        last = (x_lens - 1).clamp(min=0).reshape(N, 1, 1)
        if self.pitch.numel():
            x = torch.cat([x, self.pitch.expand(N, T, self.pitch.numel())], dim=-1)
        t = torch.arange(T, device=x.device)
        index = torch.minimum((t[:, None] + self.offsets[None, :]).clamp(min=0)[None], last)
        window = _gather_frames(x, index)  # (N, T, K, D)
        # [c, delta, delta-delta] per frame, order-major as add_deltas concatenates them
        feats = torch.einsum("ntkd,ok->ntod", window, self.taps).reshape(N, T, -1)
        feats = (feats - self.mean) / self.std
        T_out = (T + self.subsample - 1) // self.subsample
        centres = torch.arange(T_out, device=x.device) * self.subsample
        index = torch.minimum((centres[:, None] + self.context[None, :]).clamp(min=0)[None],
                              last)
        stacked = _gather_frames(feats, index).reshape(N, T_out, -1)
        lengths = (x_lens + self.subsample - 1) // self.subsample
        return stacked, lengths

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        feats, lengths = self.features(x, x_lens)
        out = self.model(feats, lengths, False)
        return out.log_probs * self.scale, lengths


def export_sherpa_onnx_model(module: SherpaCtcModel, path: Union[str, Path],
                             metadata: Optional[dict] = None, opset: int = 18) -> Path:
    """module to ONNX for sherpa-onnx: inputs x (N, T, C) float32 and x_lens (N,) int64,
    outputs log_probs (N, T', V) with V fixed and log_probs_len (N,) int64; dynamic
    batch and length; metadata (str -> str) in the model's metadata_props."""
    import contextlib
    import io

    import onnx

    path = Path(path)
    x = torch.zeros(2, 50, module.num_mel_bins)
    x_lens = torch.tensor([50, 37], dtype=torch.int64)
    batch = torch.export.Dim("N", min=1, max=1024)
    # T >= 4: at least 2 output frames while tracing (a size-1 time axis would be
    # specialised); shorter inputs still run (test_sherpa_onnx checks 1 to 3 frames)
    frames = torch.export.Dim("T", min=4, max=300000)
    with atomic_path(path) as tmp:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            torch.onnx.export(module.eval(), (x, x_lens), str(tmp), dynamo=True,
                              opset_version=opset, dynamic_shapes=({0: batch, 1: frames},
                                                                   {0: batch}),
                              input_names=["x", "x_lens"],
                              output_names=["log_probs", "log_probs_len"],
                              external_data=False)
        proto = onnx.load(str(tmp))
        for key, value in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.save(proto, str(tmp))
    return path


def write_tokens(tokens: Union[str, Path], path: Path) -> int:
    """tokens.txt with the model's outputs only (no disambiguation symbols); the blank
    <blk> 0 is what sherpa-onnx's greedy decoder looks for. Returns V."""
    table = read_tokens(tokens)
    V = num_real_tokens(table)
    by_id = {i: t for t, i in table.items() if i < V and not t.startswith("#")}
    atomic_write_text(path, "".join(f"{by_id[i]} {i}\n" for i in range(V)))
    return V


def check_token_starts(graph: Union[str, Path], num_tokens: int) -> None:
    """Raise unless every word label of the graph is on a token (not epsilon, not the
    blank): the only arcs whose words sherpa-onnx's CTC FST decoder reads."""
    import kaldifst

    from speechmoe.lang.token_start import token_start_violations

    bad = token_start_violations(kaldifst.StdVectorFst.read(str(graph)), num_tokens)
    if bad:
        raise ValueError(
            f"{graph}: {bad} word labels are on epsilon or blank arcs, which sherpa-onnx "
            "skips (their words would be lost): build the graph with "
            "speechmoe.lang.token_start.build_token_start_tlg")


def export_sherpa_onnx(model: nn.Module, features: FeatureConfig, cmvn: GlobalCMVN,
                       out_dir: Union[str, Path], tokens: Union[str, Path],
                       graph: Optional[Union[str, Path]] = None,
                       words: Optional[Union[str, Path]] = None,
                       acoustic_scale: Optional[float] = None, pitch: str = "mean",
                       max_active: int = 7000, info: Optional[dict] = None,
                       pitch_cost: Optional[dict] = None,
                       unmeasured_pitch: bool = False) -> Path:
    """The directory to copy to a device: model.onnx, tokens.txt, [TLG.fst, words.txt],
    sherpa-onnx.json (fbank options, decoding settings, each file's SHA-256) and README.md.

    graph: a TLG whose words are on token starts (build_token_start_tlg; checked).
    acoustic_scale: folded into the log-probs (the tuned WFST scale; 1.0 when None).
    pitch: how a pitch model's missing pitch is filled (pitch_fill). max_active: the
    graph decoder's setting (OfflineCtcFstDecoderConfig; the toolkit decodes with 7000,
    sherpa-onnx's default is 3000). info: extra fields for sherpa-onnx.json (the model's
    name, its checkpoint). Built under a temporary name and renamed.

    A pitch model loses accuracy on sherpa-onnx, which computes no pitch, and its export
    says how much: pitch_cost, constant_pitch_cost's measurement on a dev set, goes into
    sherpa-onnx.json and README.md. Without one a pitch model is refused, unless
    unmeasured_pitch (its README then says that the cost is unknown)."""
    if (graph is None) != (words is None):
        raise ValueError("a graph needs its words.txt, and words.txt its graph")
    out = Path(out_dir)
    scale = 1.0 if acoustic_scale is None else float(acoustic_scale)
    fill = pitch_fill(features, cmvn, pitch)
    if fill is not None and pitch_cost is None and not unmeasured_pitch:
        raise ValueError(
            f"{out}: the model was trained with pitch, which sherpa-onnx does not compute: "
            "its export holds pitch constant and loses accuracy. Measure what that costs on "
            "a dev set (constant_pitch_cost; local/export.py --pitch-cost-cuts) or export it "
            "unmeasured on purpose (unmeasured_pitch; --sherpa-unmeasured-pitch)")
    if fill is None and pitch_cost is not None:
        raise ValueError("pitch_cost is for a model trained with pitch; this one has none")
    fb = fbank_options(features)
    with atomic_dir(out) as tmp:
        V = write_tokens(tokens, tmp / "tokens.txt")
        num_classes = model.output_layer.out_features
        if num_classes != V:
            raise ValueError(f"the model has {num_classes} outputs, {tokens} {V} tokens")
        if graph is not None:
            check_token_starts(graph, V)
            shutil.copy(graph, tmp / "TLG.fst")
            shutil.copy(words, tmp / "words.txt")
        module = SherpaCtcModel(model, features, cmvn, scale, fill)
        frame_ms = features.frame_shift_ms * features.subsample
        settings = {
            "model_type": MODEL_TYPE, "vocab_size": V, "acoustic_scale": scale,
            "fbank": fb["feature_extractor"], "c_api_fbank_matches": fb["c_api_matches"],
            "c_api_fbank_differs_in": fb["c_api_differs_in"],
            "pitch": ({"trained_with": True, "fill": pitch, "values": fill,
                       "cost": pitch_cost} if fill is not None else {"trained_with": False}),
            "output_frame_ms": frame_ms,
            "timestamp_factor": frame_ms / (features.frame_shift_ms * SHERPA_SUBSAMPLING),
            "decoding": ({"method": "wfst", "graph": "TLG.fst", "words": "words.txt",
                          "max_active": int(max_active)} if graph is not None
                         else {"method": "greedy_search"}),
            "features": features.to_dict(), **(info or {})}
        meta = {"framework": "speechmoe", "sherpa_onnx_model_type": MODEL_TYPE,
                "vocab_size": V, "acoustic_scale": scale, "output_frame_ms": frame_ms,
                "fbank": json.dumps(fb["feature_extractor"]),
                "pitch": json.dumps(settings["pitch"])}
        export_sherpa_onnx_model(module, tmp / "model.onnx", meta)
        atomic_write_text(tmp / "README.md", readme(settings))
        write_manifest(tmp, settings, SHERPA_JSON)
    return out


def sherpa_recognizer(model_dir: Union[str, Path], method: str = "auto",
                      num_threads: int = 1, provider: str = "cpu",
                      max_active: Optional[int] = None, c_api_fbank: bool = False):
    """A sherpa_onnx.OfflineRecognizer for an exported directory, with the fbank options
    of sherpa-onnx.json. method: auto (the graph when the directory has one), greedy or
    wfst. c_api_fbank: only sample_rate and feature_dim set, as a C / C++ API build
    does (to measure what that costs)."""
    import sherpa_onnx

    d = Path(model_dir)
    settings, method = _settings_and_method(d, method)
    dec = settings["decoding"]
    fb = dict(settings["fbank"])
    if c_api_fbank:
        fb = {"sampling_rate": fb["sampling_rate"], "feature_dim": fb["feature_dim"]}
    graph = str(d / dec["graph"]) if method == "wfst" else ""
    active = max_active or dec.get("max_active", 3000)
    config = sherpa_onnx.OfflineRecognizerConfig(
        feat_config=sherpa_onnx.FeatureExtractorConfig(**fb),
        model_config=sherpa_onnx.OfflineModelConfig(
            zipformer_ctc=sherpa_onnx.OfflineZipformerCtcModelConfig(
                model=str(d / "model.onnx")),
            tokens=str(d / "tokens.txt"), num_threads=num_threads, provider=provider),
        decoding_method="greedy_search",
        ctc_fst_decoder_config=sherpa_onnx.OfflineCtcFstDecoderConfig(
            graph=graph, max_active=active))
    if not config.model_config.validate():  # an invalid one would end the process
        raise ValueError(f"{d}: sherpa-onnx rejects the model configuration "
                         f"{config.model_config}")
    # as sherpa_onnx.OfflineRecognizer's own from_* constructors build it
    rec = sherpa_onnx.OfflineRecognizer.__new__(sherpa_onnx.OfflineRecognizer)
    rec.recognizer = sherpa_onnx.lib._sherpa_onnx.OfflineRecognizer(config)
    rec.config = config
    return rec


def _settings_and_method(d: Path, method: str) -> tuple[dict, str]:
    """sherpa-onnx.json of an exported directory, and the decoding method that ``method``
    (auto, greedy or wfst) comes to there."""
    settings = json.loads((d / SHERPA_JSON).read_text(encoding="utf-8"))
    exported = settings["decoding"]["method"]
    if method == "auto":
        method = "wfst" if exported == "wfst" else "greedy"
    if method == "wfst" and exported != "wfst":
        raise ValueError(f"{d}: exported without a graph; use method greedy")
    return settings, method


def sherpa_transcribe(model_dir: Union[str, Path], files: Iterable[Union[str, Path]],
                      method: str = "auto", **recognizer_options) -> Iterator[list[str]]:
    """The words sherpa-onnx finds in each audio file, one file at a time: the graph's words
    (wfst; words.txt maps the ids its results give) or the tokens (greedy). The recognizer
    is sherpa_recognizer(model_dir, method, **recognizer_options); the files are read as
    the toolkit reads them (speechmoe.data.audio.read_audio: mono, at the fbank's rate)."""
    d = Path(model_dir)
    settings, method = _settings_and_method(d, method)
    rec = sherpa_recognizer(d, method, **recognizer_options)
    words = None
    if method == "wfst":
        words = {i: w for w, i in read_words(d / settings["decoding"]["words"]).items()}
    rate = settings["fbank"]["sampling_rate"]
    for f in files:
        samples, _ = read_audio(f, rate)
        stream = rec.create_stream()
        stream.accept_waveform(rate, samples)
        rec.decode_stream(stream)
        yield ([words[w] for w in stream.result.words] if words is not None
               else list(stream.result.tokens))


def with_graph(model_dir: Union[str, Path], graph: Union[str, Path],
               into: Optional[Union[str, Path]] = None) -> Path:
    """A copy of an exported sherpa-onnx directory, in symbolic links, whose decoding graph
    is ``graph`` instead of the exported one (to compare graphs with one model); into: the
    new directory (created; default a fresh temporary one)."""
    import tempfile

    d = Path(model_dir)
    settings, _ = _settings_and_method(d, "wfst")  # a directory exported with a graph
    swapped = Path(into) if into is not None else Path(tempfile.mkdtemp(prefix="sherpa-"))
    swapped.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        (swapped / f.name).symlink_to(Path(graph).resolve() if f.name ==
                                      settings["decoding"]["graph"] else f.resolve())
    return swapped


def pitch_cost_text(cost: Optional[dict]) -> str:
    """One sentence on what constant pitch costs (constant_pitch_cost's dict, or None)."""
    if cost is None:
        return ("What that costs was not measured (exported unmeasured on purpose): "
                "measure it on dev before deploying the model.")
    where = f" on {cost['set']}" if cost.get("set") else ""
    return (f"Measured at export{where} ({cost['utterances']} utterances, "
            f"{cost['ref_tokens']} reference tokens) by the toolkit on its own features: "
            f"{cost['metric']} {cost['real_pitch']:.2f}% with real pitch, "
            f"{cost['constant_pitch']:.2f}% with this export's constant pitch.")


def readme(s: dict) -> str:
    """README.md of an exported directory: what the files are and how to run them."""
    fb = s["fbank"]
    wfst = s["decoding"]["method"] == "wfst"
    py_fb = ", ".join(f"{k}={v!r}" for k, v in fb.items())
    lines = [
        "# SpeechMoE CTC model for sherpa-onnx", "",
        f"An offline CTC model of sherpa-onnx's `{MODEL_TYPE}` type (inputs `x` (N, T, "
        f"{fb['feature_dim']}) fbank and `x_lens`, outputs `log_probs` (N, T', "
        f"{s['vocab_size']}) and `log_probs_len`). The deltas, global CMVN, frame stacking "
        "and subsampling are inside model.onnx; it takes sherpa-onnx's own fbank.", "",
        "Files: model.onnx, tokens.txt" + (", TLG.fst (the decoding graph, input labels "
                                           "token id + 1, each word's label on its last "
                                           "token), words.txt" if wfst else "")
        + ", sherpa-onnx.json (these settings and each file's SHA-256).", "",
        "## Feature options", "",
        f"The fbank must be computed with `FeatureExtractorConfig({py_fb})`.", "",
    ]
    if s["c_api_fbank_matches"]:
        lines += ["These are sherpa-onnx's defaults apart from sample_rate and feature_dim, "
                  "so every API (C, C++, Python, the mobile bindings) computes it; set "
                  f"feature_dim = {fb['feature_dim']} (the default is 80)."]
    else:
        differ = ", ".join(s["c_api_fbank_differs_in"])
        lines += [f"Only Python's FeatureExtractorConfig sets {differ}; the C and C++ APIs "
                  "(and what is built on them) set only sample_rate and feature_dim and "
                  "keep low_freq 20, high_freq -400, dither 0, snip_edges false: there the "
                  "fbank differs from the one the model was trained on"
                  + (" (high_freq -400 against 0: up to ~3.3 in the top bands' log energy)"
                     if "high_freq" in differ else "")
                  + ", which costs accuracy. For such a device, train with features that "
                  "sherpa-onnx's defaults compute (features.json), or measure the cost "
                  "first (speechmoe.sherpa.sherpa_recognizer(dir, c_api_fbank=True))."]
    if s["pitch"]["trained_with"]:
        lines += ["", "## Pitch: this export is less accurate than the model", "",
                  "The model was trained with pitch features, which sherpa-onnx does not "
                  f"compute: model.onnx appends constant pitch ({s['pitch']['fill']}: "
                  f"{[round(v, 4) for v in s['pitch']['values']]}), so the tones the "
                  "model learnt to hear from pitch are missing. " + pitch_cost_text(
                      s["pitch"].get("cost"))]
    lines += [
        "", "## Decoding", "",
        f"Output frames are {s['output_frame_ms']:g} ms; sherpa-onnx's timestamps assume "
        f"40 ms: multiply them by {s['timestamp_factor']:g}.", "",
    ]
    if wfst:
        lines += [f"The acoustic scale {s['acoustic_scale']:g} (tuned with the graph) is "
                  "already applied to log_probs. Results give the tokens and word ids: map "
                  "the ids with words.txt. The toolkit decodes with max_active "
                  f"{s['decoding']['max_active']} (sherpa-onnx's default is 3000)."]
    lines += ["", "```python", "import sherpa_onnx, soundfile as sf", "",
              "config = sherpa_onnx.OfflineRecognizerConfig(",
              f"    feat_config=sherpa_onnx.FeatureExtractorConfig({py_fb}),",
              "    model_config=sherpa_onnx.OfflineModelConfig(",
              "        zipformer_ctc=sherpa_onnx.OfflineZipformerCtcModelConfig("
              "model=\"model.onnx\"),",
              "        tokens=\"tokens.txt\", num_threads=1),"]
    if wfst:
        lines += ["    ctc_fst_decoder_config=sherpa_onnx.OfflineCtcFstDecoderConfig(",
                  f"        graph=\"TLG.fst\", max_active={s['decoding']['max_active']}),"]
    lines += [")",
              "recognizer = sherpa_onnx.OfflineRecognizer.__new__(sherpa_onnx.OfflineRecognizer)",
              "recognizer.recognizer = sherpa_onnx.lib._sherpa_onnx.OfflineRecognizer(config)",
              "samples, rate = sf.read(\"a.wav\", dtype=\"float32\")",
              "stream = recognizer.create_stream()",
              "stream.accept_waveform(rate, samples)",
              "recognizer.decode_stream(stream)",
              "print(stream.result.tokens, stream.result.words)", "```", "",
              "(`speechmoe.sherpa.sherpa_recognizer(dir)` builds the same recognizer.)", ""]
    return "\n".join(lines)
