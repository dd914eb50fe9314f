"""WFST decoding of CTC outputs over a TLG (or token) graph with kaldi-decoder.

``WfstDecoder`` wraps kaldi-decoder's ``FasterDecoder`` (Kaldi's beam-pruned Viterbi
token passing) and ``DecodableCtc``. The graph's input labels are token id + 1
(``DecodableCtc`` reads log-prob column ``ilabel - 1``; 0 is epsilon), as written by
``speechmoe.lang.graph.build_tlg``; its output labels are word ids.

Scores: the search minimises ``-acoustic_scale * sum_t log p_t(token) + graph cost``
(graph cost = -ln of the LM probability, from G). With CTC posteriors there is no prior
to divide out; ``acoustic_scale = 1.0`` weighs the acoustic and LM log-probabilities
equally, which is the usual starting point (icefall / sherpa use 1.0 with HLG). Tune it,
or equivalently an LM weight of 1 / acoustic_scale, on a dev set.

Defaults: ``beam=16`` (Kaldi's default; raise towards 20 for weak models), ``max_active
=7000`` (Kaldi's decode-faster default; bounds the cost per frame on large graphs),
``min_active=20``.

Blank skipping (``blank_skip_threshold``, off by default): a CTC model's output is mostly
blank frames; each run of consecutive frames whose blank posterior is at least the
threshold is reduced to ONE frame (one, not zero: a blank between two identical tokens
is what keeps them apart). This speeds decoding up in proportion to the frames dropped
and changes scores by the dropped frames' near-zero blank costs; but a run of blanks
between two identical tokens then weighs as one frame against the LM, so with a small
acoustic scale the LM can merge such repeats more easily. Off by default, so that the
result is the exact search; 0.95-0.999 are reasonable values.

kaldi_decoder / kaldifst are imported when a decoder is built, not at module import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from speechmoe.lang.bpe import join_fragments
from speechmoe.lang.graph import max_ilabel
from speechmoe.lang.symbols import read_words

log = logging.getLogger(__name__)

Words = Union[Mapping[int, str], str, Path]


def _load_words(words: Words) -> dict[int, str]:
    if isinstance(words, (str, Path)):
        return {i: w for w, i in read_words(words).items()}
    return {int(i): str(w) for i, w in words.items()}


def _as_array(x) -> np.ndarray:
    """numpy / torch (duck-typed, no torch import) -> float32 C-contiguous numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def skip_blank_mask(log_probs: np.ndarray, threshold: float, blank: int = 0) -> np.ndarray:
    """The frames kept when each run of frames with p(blank) >= threshold is reduced to
    its first frame."""
    is_blank = log_probs[:, blank] >= np.log(threshold)
    previous = np.concatenate([[False], is_blank[:-1]])
    return ~(is_blank & previous)  # drop a blank frame only when the one before was too


def skip_blank_frames(log_probs: np.ndarray, threshold: float, blank: int = 0) -> np.ndarray:
    """Reduce each run of frames with p(blank) >= threshold to its first frame."""
    return log_probs[skip_blank_mask(log_probs, threshold, blank)]


class WfstDecoder:
    """Beam search of CTC log-posteriors over a decoding graph.

    Args:
      graph: path to an OpenFst binary (TLG.fst), or a kaldifst.StdVectorFst (a shallow
        copy, kaldifst.StdVectorFst(fst), is kept, so later changes to ``graph`` by the
        caller do not reach the decoder).
      words: {word id: word} or the path of words.txt. For a token graph
        (``make_token_graph``) pass {token id: token}.
      beam: search beam (cost units, natural log).
      max_active, min_active: bounds on the number of active states per frame.
      acoustic_scale: multiplies the log-posteriors before the search; the default of
        every decode call, which can pass its own (tuning decodes one utterance at
        several scales with one decoder: speechmoe/decode/tuning.py).
      blank_skip_threshold: None (off) or a probability; see the module doc.
      blank: the blank's column (0).

    The graph is loaded once; one FasterDecoder is built on it and reused for every
    utterance (FasterDecoder.decode re-initialises the search). The decoder holds a
    C++ reference to the graph, so ``self.graph`` must live as long as it does (it does:
    both are attributes of this object). Not thread-safe: use one WfstDecoder per thread.
    """

    def __init__(self, graph, words: Words, *, beam: float = 16.0, max_active: int = 7000,
                 min_active: int = 20, acoustic_scale: float = 1.0,
                 blank_skip_threshold: Optional[float] = None, blank: int = 0):
        import kaldi_decoder
        import kaldifst

        if isinstance(graph, (str, Path)):
            path = Path(graph)
            if not path.is_file():
                raise FileNotFoundError(f"decoding graph not found: {path}")
            fst = kaldifst.StdVectorFst.read(str(path))
            if fst is None:
                raise ValueError(f"{path}: cannot read an OpenFst StdVectorFst")
        else:
            fst = kaldifst.StdVectorFst(graph)
        if fst.start < 0:
            raise ValueError("the decoding graph is empty (no start state)")
        if blank_skip_threshold is not None and not 0.0 < blank_skip_threshold <= 1.0:
            raise ValueError(f"blank_skip_threshold must be in (0, 1], got {blank_skip_threshold}")
        self.graph = fst
        self.words = _load_words(words)
        self.acoustic_scale = float(acoustic_scale)
        self.blank_skip_threshold = blank_skip_threshold
        self.blank = blank
        self.options = kaldi_decoder.FasterDecoderOptions(
            beam=float(beam), max_active=int(max_active), min_active=int(min_active))
        self._decoder = kaldi_decoder.FasterDecoder(self.graph, self.options)
        self._max_ilabel: Optional[int] = None

    @property
    def max_ilabel(self) -> int:
        """The largest input label of the graph (= the number of columns it reads)."""
        if self._max_ilabel is None:
            self._max_ilabel = max_ilabel(self.graph)
        return self._max_ilabel

    def decode_ids(self, log_probs, acoustic_scale: Optional[float] = None) -> list[int]:
        """(T, C) natural-log CTC posteriors of one utterance -> word ids."""
        return self._search(log_probs, acoustic_scale)[0]

    def decode_aligned(self, log_probs, acoustic_scale: Optional[float] = None
                       ) -> tuple[list[str], list[tuple[int, int]]]:
        """Words and the CTC alignment of the best path: (token id, frame) for every token
        it emits, the frame being where the token's run of frames starts (frames of
        ``log_probs``, blank skipping undone). On a graph with the compact CTC topology a
        token that follows itself without a blank (which only that topology allows) shows
        here as one token."""
        ids, frame_tokens, frames = self._search(log_probs, acoustic_scale)
        tokens = []
        prev = self.blank
        for frame, tok in zip(frames, frame_tokens):
            if tok != self.blank and tok != prev:
                tokens.append((int(tok), int(frame)))
            prev = tok
        return self._words(ids), tokens

    def _search(self, log_probs, acoustic_scale: Optional[float] = None
                ) -> tuple[list[int], list[int], np.ndarray]:
        """(word ids, token id of every decoded frame, the frames' indices in log_probs)."""
        scale = self.acoustic_scale if acoustic_scale is None else float(acoustic_scale)
        import kaldi_decoder
        import kaldifst

        x = _as_array(log_probs)
        if x.ndim != 2:
            raise ValueError(f"expected log_probs of shape (T, C), got {x.shape}")
        if x.shape[1] < self.max_ilabel:
            # DecodableCtc does no bounds check: reading past the row is garbage, not an error.
            raise ValueError(f"the graph reads {self.max_ilabel} token columns but log_probs "
                             f"has {x.shape[1]}")
        frames = np.arange(x.shape[0])
        if x.shape[0] == 0:
            return [], [], frames
        if self.blank_skip_threshold is not None:
            keep = skip_blank_mask(x, self.blank_skip_threshold, self.blank)
            x, frames = x[keep], frames[keep]
        if scale != 1.0:
            x = x * np.float32(scale)
        self._decoder.decode(kaldi_decoder.DecodableCtc(x))
        ok, best = self._decoder.get_best_path()
        if ok and not self._decoder.reached_final():
            log.debug("no final state reached after %d frames: partial hypothesis", x.shape[0])
        if not ok:
            log.warning("WFST decoding found no path (%d frames)", x.shape[0])
            return [], [], frames[:0]
        ok, ilabels, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
        if not ok:
            raise RuntimeError("the best path is not linear")
        # one non-epsilon input label (token id + 1) per decoded frame
        return list(olabels), [i - 1 for i in ilabels], frames[:len(ilabels)]

    def decode(self, log_probs, acoustic_scale: Optional[float] = None) -> list[str]:
        """(T, C) natural-log CTC posteriors of one utterance -> words, searched at
        ``acoustic_scale`` (default: the decoder's own)."""
        return self._words(self.decode_ids(log_probs, acoustic_scale))

    def _words(self, ids: Sequence[int]) -> list[str]:
        """Word ids -> words, the open vocabulary's BPE fragments joined into words
        (speechmoe.lang.bpe.join_fragments: ``▁he ▁+llo`` -> ``hello``)."""
        out = []
        for i in ids:
            try:
                out.append(self.words[i])
            except KeyError:
                raise KeyError(f"output label {i} is not in the word table") from None
        return join_fragments(out)

    def decode_batch(self, log_probs: Union[Sequence, np.ndarray],
                     lengths: Optional[Sequence[int]] = None) -> list[list[str]]:
        """A list of (T_i, C) arrays, or a padded (B, T, C) array/tensor with ``lengths``."""
        if lengths is not None:
            lengths = [int(n) for n in (lengths.tolist() if hasattr(lengths, "tolist")
                                        else lengths)]
            if len(lengths) != len(log_probs):
                raise ValueError(f"{len(lengths)} lengths for {len(log_probs)} utterances")
            return [self.decode(log_probs[b][:n]) for b, n in enumerate(lengths)]
        return [self.decode(x) for x in log_probs]
