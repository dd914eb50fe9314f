"""Recognise recordings with an exported model directory (local/export.py).

    from speechmoe.recognizer import Recognizer

    rec = Recognizer.from_dir("exp/moe_4e/export")            # WFST (TLG) when there is one
    for r in rec.transcribe(["a.wav", "b.flac"]):
        print(r.name, r.text, r.tokens, r.times)

A model directory holds everything a recognition needs, each file checked against the
SHA-256 of manifest.json when it is opened: model.pt (averaged weights and the model
config), cmvn.pt, features.json, tokens.txt, lang.json, and for WFST decoding
lexicon.txt, words.txt and TLG.fst; with onnx=True the network runs in onnxruntime from
model.onnx. Everything loads with torch.load(weights_only=True).

Audio: whatever soundfile reads (wav, flac, ogg, ...), at any sample rate (resampled to
the model's 16 kHz with scipy's polyphase resampler, anti-aliasing included) and any
number of channels (averaged to mono). A file that cannot be read, is empty or is
shorter than one 25 ms analysis frame raises AudioError naming it.

Each result has the text (characters for a syllable model scored by CER, words joined by
spaces otherwise), the words, the tokens (units) of the CTC alignment and each token's
start time in seconds (the output frame where its CTC spike starts; frames are 30 ms).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch

from speechmoe.decode.greedy import ctc_greedy
from speechmoe.decode.wfst import WfstDecoder
from speechmoe.features import FeatureConfig, GlobalCMVN, compute_features
from speechmoe.inference import load_model_for_inference
from speechmoe.lang.bpe import pieces_to_words
from speechmoe.lang.symbols import read_tokens
from speechmoe.utils import resolve_device

MANIFEST = "manifest.json"
REQUIRED = ("model.pt", "cmvn.pt", "features.json", "tokens.txt", "lang.json")
GRAPH = ("lexicon.txt", "words.txt", "TLG.fst")


class AudioError(ValueError):
    """A recording that cannot be recognised (unreadable, empty, too short)."""


class ModelDirError(ValueError):
    """A model directory that is incomplete or whose files do not match its manifest."""


@dataclass
class Transcript:
    name: str
    text: str
    words: list[str]
    tokens: list[str]
    times: list[float]  # start of each token, seconds
    duration: float  # seconds of audio
    method: str = "wfst"
    extra: dict = field(default_factory=dict)


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def read_audio(path: Union[str, Path], sample_rate: int = 16000):
    """(mono float32 samples at sample_rate, seconds); AudioError naming the file."""
    import numpy as np
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"{path}: unreadable audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    samples = data.mean(axis=1)  # channels averaged
    if rate != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(rate), int(sample_rate))
        samples = resample_poly(samples, sample_rate // g, int(rate) // g).astype(np.float32)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    seconds = len(samples) / sample_rate
    if len(samples) < int(0.025 * sample_rate):
        raise AudioError(f"{path}: too short ({seconds * 1000:.0f} ms; at least 25 ms)")
    return samples, seconds


class Recognizer:
    def __init__(self, model, system, cmvn, feature_config, tokens: dict[int, str],
                 lang_info: dict, decoder=None, device: str = "cpu", session=None):
        self.model, self.system, self.cmvn = model, system, cmvn
        self.session = session  # an onnxruntime InferenceSession, or None (torch)
        self.features = feature_config
        self.tokens, self.lang_info, self.decoder = tokens, lang_info, decoder
        self.device = device

    @classmethod
    def from_dir(cls, path: Union[str, Path], method: str = "auto", device: str = "auto",
                 beam: float = 16.0, max_active: int = 7000,
                 acoustic_scale: Optional[float] = None, onnx: bool = False,
                 threads: int = 0, int8: bool = False) -> "Recognizer":
        """Open a model directory. method: wfst, greedy, or auto (wfst when the directory
        has a graph). device: auto (CUDA when available), cpu or cuda. onnx: run the
        network in onnxruntime (model.onnx); int8: in onnxruntime with int8 weights
        (model.int8.onnx; implies onnx). threads: intra-op threads (0: default)."""
        path = Path(path)
        manifest = verify_model_dir(path)
        has_graph = all((path / f).is_file() for f in GRAPH)
        if method == "auto":
            method = "wfst" if has_graph else "greedy"
        if method == "wfst" and not has_graph:
            raise ModelDirError(f"{path}: no decoding graph ({', '.join(GRAPH)}); use "
                                "method greedy or export with the graph")
        device = resolve_device(device)
        model, system = load_model_for_inference(path / "model.pt")
        model.to(device)
        session = None
        if onnx or int8:
            name = "model.int8.onnx" if int8 else "model.onnx"
            if not (path / name).is_file():
                raise ModelDirError(f"{path}: no {name} (export without --no-onnx"
                                    + (" and --no-int8)" if int8 else ")"))
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = threads
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] \
                if device.type == "cuda" else ["CPUExecutionProvider"]
            session = ort.InferenceSession(str(path / name), opts, providers=providers)
        cmvn = GlobalCMVN.load(path / "cmvn.pt")
        feats = FeatureConfig.load(path / "features.json")
        tokens = {i: t for t, i in read_tokens(path / "tokens.txt").items()}
        info = json.loads((path / "lang.json").read_text())
        decoder = None
        if method == "wfst":
            scale = acoustic_scale if acoustic_scale is not None else \
                manifest.get("acoustic_scale", 1.0)
            decoder = WfstDecoder(path / "TLG.fst", path / "words.txt", beam=beam,
                                  max_active=max_active, acoustic_scale=scale)
        return cls(model, system, cmvn, feats, tokens, info, decoder, device, session)

    @property
    def method(self) -> str:
        return "wfst" if self.decoder is not None else "greedy"

    @property
    def frame_seconds(self) -> float:
        return self.features.frame_shift_ms / 1000 * self.features.subsample

    def transcribe(self, inputs: Iterable[Union[str, Path, tuple]],
                   batch_seconds: float = 120.0) -> list[Transcript]:
        """Recognise files (paths) or (name, samples, sample_rate) tuples, in batches of
        about batch_seconds of audio. Raises AudioError for the first bad input; the
        command line (speechmoe-transcribe) reads files one by one to go on past one."""
        items = []
        for x in inputs:
            if isinstance(x, tuple):
                name, samples, rate = x
                items.append((name, *self._prepare_samples(name, samples, rate)))
            else:
                samples, seconds = read_audio(x, self.features.sample_rate)
                items.append((str(x), samples, seconds))
        out: dict[str, Transcript] = {}
        order = sorted(range(len(items)), key=lambda i: items[i][2])
        batch: list[int] = []
        for i in order:
            batch.append(i)
            if sum(items[j][2] for j in batch) >= batch_seconds:
                self._run([items[j] for j in batch], out)
                batch = []
        if batch:
            self._run([items[j] for j in batch], out)
        return [out[name] for name, _, _ in items]

    def _prepare_samples(self, name, samples, rate):
        import numpy as np

        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1 if samples.shape[1] <= 8 else 0)
        if rate != self.features.sample_rate:
            from scipy.signal import resample_poly

            g = math.gcd(int(rate), int(self.features.sample_rate))
            samples = resample_poly(samples, self.features.sample_rate // g,
                                    int(rate) // g).astype(np.float32)
        if len(samples) < int(0.025 * self.features.sample_rate):
            raise AudioError(f"{name}: too short ({len(samples)} samples)")
        return samples, len(samples) / self.features.sample_rate

    def _run(self, items: Sequence[tuple], out: dict) -> None:
        feats = [compute_features(s, self.features.sample_rate, self.features, self.cmvn)
                 for _, s, _ in items]
        lengths = torch.tensor([f.shape[0] for f in feats])
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        if self.session is not None:
            log_probs = self.session.run(None, {"features": x.numpy(),
                                                "lengths": lengths.numpy()})[0]
        else:
            with torch.no_grad():
                o = self.model(x.to(self.device), lengths.to(self.device))
            log_probs = o.log_probs.float().cpu().numpy()
        for (name, _, seconds), lp, n in zip(items, log_probs, lengths.tolist()):
            lp = lp[:n]
            if self.decoder is not None:
                words, aligned = self.decoder.decode_aligned(lp)
            else:
                ids = lp.argmax(-1)
                aligned = [(int(t), f) for f, t in enumerate(ids)
                           if t != 0 and (f == 0 or ids[f - 1] != t)]
                words = [self.tokens[t] for t in ctc_greedy(lp)[0]]
            if self.decoder is None and self.lang_info.get("unit_type") == "bpe":
                words = pieces_to_words(words)
            out[name] = Transcript(
                name=name, text=self.join(words), words=words,
                tokens=[self.tokens[t] for t, _ in aligned],
                times=[round(f * self.frame_seconds, 3) for _, f in aligned],
                duration=seconds, method=self.method)

    def join(self, words: Sequence[str]) -> str:
        """Characters joined without spaces for a CER (Chinese) model, with spaces else;
        greedy syllables are always joined with spaces."""
        if self.decoder is not None and self.lang_info.get("metric", "CER") == "CER":
            out = ""
            for w in words:  # a space only between two Latin words
                if out and out[-1].isascii() and out[-1].isalnum() and w[:1].isascii():
                    out += " "
                out += w
            return out
        return " ".join(words)


def verify_model_dir(path: Path) -> dict:
    """The manifest of a model directory, after checking every file it lists."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"{path}: not a directory (export a model with local/export.py)")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelDirError(f"{path}: no {MANIFEST} (export a model with local/export.py)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{mpath}: not valid JSON ({exc})") from None
    files = manifest.get("files", {})
    missing = [f for f in REQUIRED if f not in files or not (path / f).is_file()]
    if missing:
        raise ModelDirError(f"{path}: incomplete, missing {missing}")
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise ModelDirError(f"{f}: listed in {MANIFEST} but missing")
        if f.stat().st_size != meta["bytes"] or sha256(f) != meta["sha256"]:
            raise ModelDirError(f"{f}: does not match its checksum in {MANIFEST} (changed "
                                "or damaged): export the model again")
    return manifest
