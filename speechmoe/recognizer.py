"""Recognise recordings with an exported model directory (local/export.py).

    from speechmoe.recognizer import Recognizer

    rec = Recognizer.from_dir("exp/moe_4e/export")            # WFST (TLG) when there is one
    for r in rec.transcribe(["a.wav", "b.flac"]):
        print(r.name, r.text, r.tokens, r.times)

A model directory holds everything a recognition needs, each file checked against the
SHA-256 of manifest.json when it is opened (speechmoe.model_dir): model.pt (averaged
weights and the model config), cmvn.pt, features.json, tokens.txt, lang.json, and for
WFST decoding lexicon.txt, words.txt and TLG.fst; with onnx=True the network runs in
onnxruntime from model.onnx. Everything loads with torch.load(weights_only=True).

Audio: whatever soundfile reads (wav, flac, ogg, ...), at any sample rate (resampled to
the model's 16 kHz with scipy's polyphase resampler, anti-aliasing included) and any
number of channels (averaged to mono). A file that cannot be read, is empty or is
shorter than one 25 ms analysis frame raises AudioError naming it (speechmoe.data.audio).

Each result has the text (characters for a syllable model scored by CER, words joined by
spaces otherwise), the words, the tokens (units) of the CTC alignment and each token's
start time in seconds (the output frame where its CTC spike starts; frames are 30 ms), and
its segments (start and end time, text).

Long recordings (longer than one network window, 20 s by default) go through
speechmoe.longform: overlapping windows read from the file one at a time, segments cut at
the pauses, each decoded as soon as it is cut, in memory that does not grow with the
recording's length. `rec.segments("talk.flac")` yields the segments as they finish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from speechmoe.data.audio import MIN_SECONDS, FileWindows, audio_info, check_length, \
    prepare_samples, read_audio
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.decode.wfst import WfstDecoder
from speechmoe.features import FeatureConfig, GlobalCMVN, compute_features
from speechmoe.inference import load_model_for_inference
from speechmoe.lang.bpe import pieces_to_words
from speechmoe.lang.symbols import read_tokens
from speechmoe.lang.tokenizer import words_to_text
from speechmoe.longform import LongFormConfig, PauseSegmenter, WindowPlan, stream_log_probs
from speechmoe.model_dir import GRAPH, ModelDirError, verify_model_dir
from speechmoe.utils import resolve_device


@dataclass
class Segment:
    """A stretch of a recording decoded on its own: its words, tokens and times (seconds on
    the recording's clock); start and end span its tokens with 0.2 s of margin."""
    name: str
    index: int
    start: float
    end: float
    text: str
    words: list[str]
    tokens: list[str]
    times: list[float]


@dataclass
class AudioInput:
    """One recording made ready by Recognizer.prepare: its samples at the model's rate, or
    for a long file none (it is read window by window as it is decoded)."""
    name: str
    seconds: float
    long: bool  # through the long-form path (segments)
    samples: Optional[np.ndarray] = None
    path: Optional[Path] = None


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
    segments: list[Segment] = field(default_factory=list)  # those with words


class Recognizer:
    def __init__(self, model, system, cmvn, feature_config, tokens: dict[int, str],
                 lang_info: dict, decoder=None, device: str = "cpu", session=None):
        self.model, self.system, self.cmvn = model, system, cmvn
        self.session = session  # an onnxruntime InferenceSession, or None (torch)
        self.features = feature_config
        self.tokens, self.lang_info, self.decoder = tokens, lang_info, decoder
        self.device = device
        self.long_form = LongFormConfig()

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

    def prepare(self, x: Union[str, Path, tuple, AudioInput]) -> AudioInput:
        """One input made ready to recognise: a path, a (name, samples, sample_rate) tuple,
        or an AudioInput (returned as it is). Here, and only here, a recording is found
        long (self.long_form.is_long): a long file is not read, the rest is read, averaged
        to mono and resampled to the model's rate. AudioError naming a bad input."""
        if isinstance(x, AudioInput):
            return x
        sr = self.features.sample_rate
        if isinstance(x, tuple):
            name, samples, rate = x
            samples = prepare_samples(name, samples, rate, sr)
            seconds = len(samples) / sr
            return AudioInput(name, seconds, self.long_form.is_long(seconds), samples)
        frames, rate = audio_info(x)
        if self.long_form.is_long(frames / rate):
            return AudioInput(str(x), frames / rate, True, path=Path(x))
        samples, seconds = read_audio(x, sr)
        return AudioInput(str(x), seconds, False, samples, Path(x))

    def transcribe(self, inputs: Iterable[Union[str, Path, tuple, AudioInput]],
                   batch_seconds: float = 120.0) -> list[Transcript]:
        """Recognise files (paths), (name, samples, sample_rate) tuples or prepared inputs,
        in batches of about batch_seconds of audio; a recording longer than one window
        through the long-form path (segments). Raises AudioError for the first bad input;
        the command line (speechmoe-transcribe) prepares files one by one to go on past
        one."""
        names, short, out = [], [], {}
        for x in inputs:
            a = self.prepare(x)
            names.append(a.name)
            if a.long:
                out[a.name] = self.transcribe_long(a)
            else:
                short.append(a)
        batch: list[AudioInput] = []
        for a in sorted(short, key=lambda a: a.seconds):
            batch.append(a)
            if sum(b.seconds for b in batch) >= batch_seconds:
                self._run(batch, out)
                batch = []
        if batch:
            self._run(batch, out)
        return [out[name] for name in names]

    def segments(self, source: Union[str, Path, tuple, AudioInput],
                 config: Optional[LongFormConfig] = None) -> Iterator[Segment]:
        """The segments of a recording of any length, each as soon as it is decoded (see
        speechmoe.longform): source is a path (read window by window), a
        (name, samples, sample_rate) tuple or a prepared input."""
        cfg = (config or self.long_form).check()
        sr = self.features.sample_rate
        if isinstance(source, tuple):
            source = self.prepare(source)
        if isinstance(source, AudioInput) and source.samples is not None:
            name, samples = source.name, source.samples
            total, reader, closer = len(samples), (lambda a, b: samples[a:b]), None
        else:
            name, path = (source.name, source.path) if isinstance(source, AudioInput) \
                else (str(source), Path(source))
            reader = FileWindows(path, sr)
            total, closer = reader.total, reader.close
            check_length(name, total, sr)
        plan = WindowPlan.make(cfg, sr, self.frame_seconds)
        segmenter = PauseSegmenter(cfg, self.frame_seconds, blank=0)

        def network(window):
            feats = compute_features(np.asarray(window, dtype=np.float32), sr, self.features,
                                     self.cmvn)
            lp, _ = self._network([feats])
            return lp[0]

        def alone(start, lp):
            """The segment's own audio through the network, as an utterance."""
            if not cfg.second_pass:
                return lp
            a = start * plan.frame_samples
            b = min(total, (start + len(lp)) * plan.frame_samples)
            if b - a < int(MIN_SECONDS * sr):
                return lp
            out = network(reader(a, b))
            return out[: len(lp)]

        def pieces():
            for kept, energy in stream_log_probs(reader, total, plan, network,
                                                 with_energy=True):
                yield from segmenter.push(kept, energy)
            yield from segmenter.finish()

        index = 0
        try:
            for start, lp in pieces():
                seg = self._segment(name, index, start, alone(start, lp))
                if seg is not None:
                    index += 1
                    yield seg
        finally:
            if closer is not None:
                closer()

    def transcribe_long(self, source: Union[str, Path, tuple, AudioInput],
                        config: Optional[LongFormConfig] = None) -> Transcript:
        """One recording through the long-form path, its segments joined."""
        if isinstance(source, AudioInput):
            name, seconds = source.name, source.seconds
        elif isinstance(source, tuple):
            source = self.prepare(source)
            name, seconds = source.name, source.seconds
        else:
            frames, rate = audio_info(source)
            name, seconds = str(source), frames / rate
        return self.joined(name, list(self.segments(source, config)), seconds)

    def joined(self, name: str, segs: Sequence[Segment], seconds: float) -> Transcript:
        """The transcript of a recording from its segments."""
        words = [w for s in segs for w in s.words]
        return Transcript(name=name, text=self.join(words), words=words,
                          tokens=[t for s in segs for t in s.tokens],
                          times=[t for s in segs for t in s.times], duration=seconds,
                          method=self.method, segments=list(segs))

    def _segment(self, name: str, index: int, start: int, lp,
                 decoded: Optional[tuple] = None) -> Optional[Segment]:
        """Decode one segment (frames from `start` on the recording's clock; `decoded`: its
        words and alignment when already decoded); None when it holds no word."""
        words, aligned = decoded if decoded is not None else self._decode(lp)
        if not words:
            return None
        fs = self.frame_seconds
        pad = int(round(0.2 / fs))
        first, last = aligned[0][1] if aligned else 0, aligned[-1][1] if aligned else len(lp)
        return Segment(name=name, index=index,
                       start=round((start + max(0, first - pad)) * fs, 3),
                       end=round((start + min(len(lp), last + 1 + pad)) * fs, 3),
                       text=self.join(words), words=words,
                       tokens=[self.tokens[t] for t, _ in aligned],
                       times=[round((start + f) * fs, 3) for _, f in aligned])

    def _network(self, feats: Sequence[torch.Tensor]):
        """Log-probs (numpy, B x T x C) and output lengths of a batch of feature matrices."""
        lengths = torch.tensor([f.shape[0] for f in feats])
        x = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
        if self.session is not None:
            log_probs = self.session.run(None, {"features": x.numpy(),
                                                "lengths": lengths.numpy()})[0]
        else:
            with torch.no_grad():
                o = self.model(x.to(self.device), lengths.to(self.device))
            log_probs = o.log_probs.float().cpu().numpy()
        return log_probs, lengths.tolist()

    def _decode(self, lp) -> tuple[list[str], list[tuple[int, int]]]:
        """Words and (token id, frame) of the CTC alignment of one utterance's log-probs."""
        if self.decoder is not None:
            words, aligned = self.decoder.decode_aligned(lp)
        else:
            ids = lp.argmax(-1)
            aligned = [(int(t), f) for f, t in enumerate(ids)
                       if t != 0 and (f == 0 or ids[f - 1] != t)]
            words = [self.tokens[t] for t in ctc_greedy(lp)[0]]
        if self.decoder is None and self.lang_info.get("unit_type") == "bpe":
            words = pieces_to_words(words)
        return words, aligned

    def _run(self, items: Sequence[AudioInput], out: dict) -> None:
        feats = [compute_features(a.samples, self.features.sample_rate, self.features,
                                  self.cmvn) for a in items]
        log_probs, lengths = self._network(feats)
        for a, lp, n in zip(items, log_probs, lengths):
            lp = lp[:n]
            words, aligned = self._decode(lp)
            seg = self._segment(a.name, 0, 0, lp, (words, aligned))
            out[a.name] = Transcript(
                name=a.name, text=self.join(words), words=words,
                tokens=[self.tokens[t] for t, _ in aligned],
                times=[round(f * self.frame_seconds, 3) for _, f in aligned],
                duration=a.seconds, method=self.method, segments=[seg] if seg else [])

    def join(self, words: Sequence[str]) -> str:
        """Characters joined without spaces for a CER (Chinese) model, with spaces else;
        greedy syllables are always joined with spaces."""
        if self.decoder is None:
            return " ".join(words)
        return words_to_text(words, self.lang_info.get("metric", "CER"))

