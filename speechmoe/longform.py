"""Long recordings: windows for the network, segments at the pauses its CTC output shows.

A recording of any length is read and recognised piece by piece, in memory that does not
grow with its length:

1. **Windows.** The network runs on overlapping windows of audio (default 20 s, no longer
   than the utterances it was trained on, hop 16 s). Of each window's output frames only
   the middle part is kept (the first window from its start, the last to its end), so every
   kept frame saw at least half the overlap (2 s) of context on each side, as inside an
   utterance. The kept parts tile the recording exactly: a window starts on an output-frame
   boundary (a multiple of 30 ms), so its frame j is the recording's frame start / 30 ms + j.
2. **Segments.** The kept log-probs go through :class:`PauseSegmenter`. A segment grows
   until it reaches ``max_segment_seconds`` and is then cut in the middle of its longest
   blank run (a run of frames whose best label is the CTC blank; at the limit when it has
   none), so that a segment ends at the longest pause it holds; a blank run of
   ``pause_seconds`` or more ends a segment at once (once it is ``min_segment_seconds``
   long). A CTC model's blank runs between the characters of a sentence often last
   0.3 s: cutting at every such run split sentences and cost 27 points of CER on a
   30-minute recording (egs/synth_mandarin/RESULTS.md, long recordings), which is why the
   cut waits for the longest one.
3. **Decoding.** Each segment's audio goes through the network again on its own, as an
   utterance (``second_pass``), and is decoded (the WFST search, or greedy) as soon as it
   is cut, so that results arrive while the recording is still being read; its tokens
   carry times on the recording's clock. The second pass is what makes a long recording
   read like its utterances: the windows' own output, where self-attention spans several
   sentences, gave 30% CER on a 30-minute recording whose utterances one by one give 7%
   (egs/synth_mandarin/RESULTS.md); the windows still find the pauses well.

Segmenting with the acoustic model itself needs no voice-activity model, and it cuts where
the model hears no token, which is where a decode can restart without losing one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np


QUIET_NATS = 1.0  # a frame within this much log-energy of a pause's quietest is quiet


@dataclass
class LongFormConfig:
    window_seconds: float = 20.0  # network input per window (the model trained on <= ~15 s)
    overlap_seconds: float = 4.0  # windows overlap by this much; half of it is each side's context
    max_segment_seconds: float = 15.0  # a segment is cut at its longest pause by this length
    min_segment_seconds: float = 1.0  # no cut before a segment is this long
    pause_seconds: float = 0.5  # a blank run this long ends a segment at once (chosen on dev)
    second_pass: bool = True  # each segment's audio through the network again, on its own

    def check(self) -> "LongFormConfig":
        if not 0.5 <= self.overlap_seconds < self.window_seconds:
            raise ValueError(f"long-form: overlap {self.overlap_seconds} s must be >= 0.5 s "
                             f"and shorter than the window ({self.window_seconds} s)")
        if not 0 < self.min_segment_seconds < self.max_segment_seconds:
            raise ValueError(f"long-form: need 0 < min segment ({self.min_segment_seconds} s) "
                             f"< max segment ({self.max_segment_seconds} s)")
        if self.pause_seconds <= 0:
            raise ValueError(f"long-form: pause {self.pause_seconds} s must be > 0")
        return self

    def is_long(self, seconds: float) -> bool:
        """Whether a recording this long goes through the long-form path (windows and
        segments) rather than through the network in one piece: longer than one window."""
        return seconds > self.window_seconds


@dataclass
class WindowPlan:
    """Windows in samples and the part of each window's output frames that is kept."""
    frame_samples: int  # samples per output frame (frame shift x subsampling)
    window_samples: int
    hop_frames: int
    margin_frames: int  # frames dropped at each inner window edge

    @classmethod
    def make(cls, cfg: LongFormConfig, sample_rate: int, frame_seconds: float) -> "WindowPlan":
        frame_samples = int(round(frame_seconds * sample_rate))
        window_frames = int(cfg.window_seconds / frame_seconds)
        margin = int(round(cfg.overlap_seconds / 2 / frame_seconds))
        hop = window_frames - 2 * margin
        if hop <= 0:
            raise ValueError("long-form: the overlap leaves no frame to keep")
        return cls(frame_samples, window_frames * frame_samples, hop, margin)

    @property
    def hop_samples(self) -> int:
        return self.hop_frames * self.frame_samples

    def num_windows(self, total_samples: int) -> int:
        if total_samples <= self.window_samples:
            return 1
        return 1 + math.ceil((total_samples - self.window_samples) / self.hop_samples)

    def window(self, k: int, total_samples: int) -> tuple[int, int]:
        """Sample range [start, end) of window k."""
        start = k * self.hop_samples
        return start, min(start + self.window_samples, total_samples)

    def keep(self, k: int, n_windows: int, frames: int) -> tuple[int, int]:
        """The kept output frames [lo, hi) of window k, which has `frames` output frames."""
        lo = 0 if k == 0 else self.margin_frames
        hi = frames if k == n_windows - 1 else min(frames, self.margin_frames + self.hop_frames)
        return lo, hi


def blank_runs(is_blank: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True in a boolean vector."""
    padded = np.concatenate([[False], is_blank, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class PauseSegmenter:
    """Cuts a stream of log-prob frames into segments at pauses (see the module doc).

    push(frames) returns the segments complete so far, finish() the rest; each segment is
    (first frame on the recording's clock, its log-probs)."""

    def __init__(self, cfg: LongFormConfig, frame_seconds: float, blank: int = 0):
        self.cfg = cfg.check()
        self.blank = blank
        self.min_frames = max(1, int(round(cfg.min_segment_seconds / frame_seconds)))
        self.max_frames = max(self.min_frames + 1,
                              int(round(cfg.max_segment_seconds / frame_seconds)))
        self.pause_frames = max(1, int(round(cfg.pause_seconds / frame_seconds)))
        self.start = 0  # the buffer's first frame on the recording's clock
        self.parts: list[np.ndarray] = []
        self.energy: list[np.ndarray] = []

    def push(self, frames: np.ndarray, energy: Optional[np.ndarray] = None
             ) -> list[tuple[int, np.ndarray]]:
        """frames: (n, classes) log-probs; energy: (n,) the audio's log-energy per frame, if
        known (a cut then goes to the quietest frame of its blank run, not its middle)."""
        if len(frames):
            self.parts.append(frames)
            self.energy.append(np.zeros(len(frames)) if energy is None
                               else np.asarray(energy, dtype=np.float64))
        return self._cut(final=False)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[tuple[int, np.ndarray]]:
        if not self.parts:
            return []
        buf = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        energy = np.concatenate(self.energy)
        out = []
        while True:
            cut = self._find_cut(buf, energy, final)
            if cut is None:
                break
            out.append((self.start, buf[:cut]))
            buf, energy = buf[cut:], energy[cut:]
            self.start += cut
        if final and len(buf):
            out.append((self.start, buf))
            self.start += len(buf)
            buf, energy = buf[:0], energy[:0]
        self.parts, self.energy = ([buf], [energy]) if len(buf) else ([], [])
        return out

    def _find_cut(self, buf: np.ndarray, energy: np.ndarray, final: bool) -> Optional[int]:
        n = len(buf)
        if n <= self.min_frames:
            return None
        runs = blank_runs(buf.argmax(-1) == self.blank)
        open_run = None
        if not final and runs and runs[-1][1] == n:
            open_run = runs.pop()  # may go on in the frames still to come

        def point(s: int, e: int) -> int:
            """Where a blank run is cut: at the end of its quiet part, just before the next
            sound (the middle when no energy is known or it is flat). A run's ends may hold
            the edges of the words around it (a CTC spike need not sit at the start of its
            sound), its quiet part not; and a segment that starts with silence can lose its
            first word (on the embedded corpus, whose utterances start at their first sound,
            0.14 s of leading silence cost the first character), while trailing silence is
            what every utterance has."""
            lo, hi = max(s, self.min_frames), min(e, self.max_frames + 1, n)
            if lo >= hi:
                return (s + e) // 2
            seg = energy[lo:hi]
            if not seg.any() or seg.max() == seg.min():
                return min(max((s + e) // 2, lo), hi - 1)
            quiet = np.flatnonzero(seg <= seg.min() + QUIET_NATS)
            return lo + int(quiet[-1])

        for s, e in runs:
            c = point(s, e)
            if e - s >= self.pause_frames and self.min_frames <= c <= self.max_frames \
                    and 0 < c < n:
                return c
        if n <= self.max_frames:
            return None  # wait for a pause (or for the limit)
        if open_run is not None and open_run[0] <= self.max_frames:
            return None  # a pause may be under way where the cut would go: wait for its end
        inside = [(e - s, point(s, e)) for s, e in runs
                  if s < self.max_frames and e > self.min_frames]
        inside = [(k, c) for k, c in inside if self.min_frames <= c <= self.max_frames]
        return max(inside)[1] if inside else self.max_frames


def frame_energy(samples: np.ndarray, frame_samples: int) -> np.ndarray:
    """Log-energy of each output frame's samples (the last frame zero-padded)."""
    n = -(-len(samples) // frame_samples)
    x = np.zeros(n * frame_samples, dtype=np.float64)
    x[: len(samples)] = samples
    return np.log(np.square(x.reshape(n, frame_samples)).sum(1) + 1e-10)


def stream_log_probs(read_window, total_samples: int, plan: WindowPlan, network,
                     with_energy: bool = False) -> Iterator:
    """The recording's log-probs, window by window (kept frames only); with_energy: pairs
    (log-probs, the audio's log-energy per frame).

    read_window(start, end) -> samples of [start, end); network(samples) -> log-probs
    (frames, classes) of one window."""
    n = plan.num_windows(total_samples)
    for k in range(n):
        start, end = plan.window(k, total_samples)
        samples = read_window(start, end)
        lp = network(samples)
        lo, hi = plan.keep(k, n, len(lp))
        if with_energy:
            energy = frame_energy(np.asarray(samples), plan.frame_samples)
            energy = np.pad(energy, (0, max(0, len(lp) - len(energy))))[: len(lp)]
            yield lp[lo:hi], energy[lo:hi]
        else:
            yield lp[lo:hi]
