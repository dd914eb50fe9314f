"""Long recordings (speechmoe.longform): windows that tile the recording exactly, and
segments cut in the middle of pauses, within the length limits, the same whether the
frames arrive at once or window by window."""

import numpy as np
import pytest

from speechmoe.longform import (LongFormConfig, PauseSegmenter, WindowPlan, blank_runs,
                                stream_log_probs)

FS = 0.03  # seconds per output frame
SR = 16000


def local_network(samples):
    """A stand-in for the network whose frame j depends only on its own 480 samples (the
    recording's clock is in the samples), so that stitched windows must equal one pass."""
    n = -(-len(samples) // 480)
    padded = np.pad(samples, (0, n * 480 - len(samples)))
    return padded.reshape(n, 480)[:, :1].astype(np.float64)  # each frame's first sample


@pytest.mark.parametrize("seconds", [0.5, 20.0, 20.01, 47.3, 130.0])
def test_windows_tile_the_recording_exactly(seconds):
    cfg = LongFormConfig(window_seconds=20.0, overlap_seconds=4.0)
    plan = WindowPlan.make(cfg, SR, FS)
    assert plan.frame_samples == 480 and plan.margin_frames == 67
    total = int(seconds * SR)
    samples = np.arange(total, dtype=np.float64)  # sample i holds i: its place in the file
    kept = np.concatenate(list(stream_log_probs(lambda a, b: samples[a:b], total, plan,
                                                local_network)))
    whole = local_network(samples)
    assert kept.shape == whole.shape
    np.testing.assert_array_equal(kept, whole)
    n = plan.num_windows(total)
    w = plan.window_samples  # 666 frames of 30 ms: 19.98 s
    assert n == (1 if total <= w else 1 + int(np.ceil((total - w) / plan.hop_samples)))


def test_blank_runs_by_hand():
    assert blank_runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert blank_runs(np.zeros(3, bool)) == []


def frames(labels, classes=5):
    """Log-probs whose best label per frame is `labels` (0: blank)."""
    lp = np.full((len(labels), classes), -5.0)
    lp[np.arange(len(labels)), labels] = -0.01
    return lp


def pattern(*runs):
    """(label, count) runs -> label per frame."""
    return [lab for lab, n in runs for _ in range(n)]


def test_cuts_in_the_middle_of_pauses_within_the_limits():
    cfg = LongFormConfig(min_segment_seconds=0.9, max_segment_seconds=3.0, pause_seconds=0.3)
    # speech 40 frames, pause 20 (cut at its middle, 50), speech 5, pause 12 (its middle,
    # 71, is too early: 21 frames after 50, min 30), speech 40, pause 10 (cut at 122),
    # speech 10 (the rest, at the end)
    labels = pattern((1, 40), (0, 20), (2, 5), (0, 12), (3, 40), (0, 10), (4, 10))
    seg = PauseSegmenter(cfg, FS)
    out = seg.push(frames(labels)) + seg.finish()
    starts = [s for s, _ in out]
    assert starts == [0, 50, 122]
    assert sum(len(lp) for _, lp in out) == len(labels)
    assert all(len(lp) <= seg.max_frames for _, lp in out)


def test_no_pause_cuts_at_the_longest_blank_run_or_the_limit():
    cfg = LongFormConfig(min_segment_seconds=0.3, max_segment_seconds=1.5, pause_seconds=0.3)
    # 50 frames allowed; blank runs of 2 and 5 frames only (pause needs 10)
    labels = pattern((1, 20), (0, 2), (1, 10), (0, 5), (1, 40))
    seg = PauseSegmenter(cfg, FS)
    out = seg.push(frames(labels)) + seg.finish()
    assert out[0][0] == 0 and len(out[0][1]) == 34  # the middle of the 5-frame run (32..37)
    seg = PauseSegmenter(cfg, FS)
    out = seg.push(frames([1] * 120)) + seg.finish()
    assert [len(lp) for _, lp in out] == [50, 50, 20]


def test_streamed_frames_cut_as_one_pass():
    cfg = LongFormConfig(min_segment_seconds=0.6, max_segment_seconds=2.4, pause_seconds=0.3)
    rng = np.random.default_rng(0)
    labels = [0 if rng.random() < 0.6 else int(rng.integers(1, 5)) for _ in range(900)]
    labels[100:130] = [0] * 30
    labels[400:415] = [0] * 15
    lp = frames(labels)
    one = PauseSegmenter(cfg, FS)
    whole = one.push(lp) + one.finish()
    many = PauseSegmenter(cfg, FS)
    pieces = []
    for a in range(0, 900, 37):
        pieces += many.push(lp[a:a + 37])
    pieces += many.finish()
    assert [s for s, _ in pieces] == [s for s, _ in whole]
    for (_, a), (_, b) in zip(pieces, whole):
        np.testing.assert_array_equal(a, b)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        LongFormConfig(window_seconds=4, overlap_seconds=4).check()
    with pytest.raises(ValueError, match="min segment"):
        LongFormConfig(min_segment_seconds=5, max_segment_seconds=3).check()


def test_a_long_cut_is_decoded_in_windows_of_its_features():
    """speechmoe.decode.posteriors: the long-form windows over model-input frames, joined,
    tile the cut exactly (a frame-local stand-in network gives the one-pass output)."""
    from speechmoe.decode.posteriors import frame_plan

    plan = frame_plan(LongFormConfig(), FS)
    assert (plan.window_samples, plan.margin_frames, plan.hop_frames) == (666, 67, 532)
    feats = np.arange(2000, dtype=np.float64)[:, None] * np.ones((1, 3))
    kept = np.concatenate(list(stream_log_probs(lambda a, b: feats[a:b], len(feats), plan,
                                                lambda x: 2 * x)))
    np.testing.assert_array_equal(kept, 2 * feats)


def test_a_cut_goes_to_the_quiet_end_of_the_pause_when_the_energy_is_known():
    """A pause's blank run may hold the tail of the word before it: the cut goes to the last
    quiet frame (within QUIET_NATS of the quietest), just before the next sound."""
    from speechmoe.longform import QUIET_NATS

    cfg = LongFormConfig(min_segment_seconds=0.3, max_segment_seconds=6.0, pause_seconds=0.5)
    labels = pattern((1, 30), (0, 30), (2, 30))  # the blank run: frames 30..59
    energy = np.full(90, 5.0)
    energy[36:56] = -3.0  # silent frames 36..55; 30..35 the previous word's fading tail
    energy[50] = -3.0 + QUIET_NATS / 2  # still quiet
    seg = PauseSegmenter(cfg, FS)
    out = seg.push(frames(labels), energy) + seg.finish()
    assert [s for s, _ in out] == [0, 55]
    seg = PauseSegmenter(cfg, FS)  # no energy: the middle of the run
    out = seg.push(frames(labels)) + seg.finish()
    assert [s for s, _ in out] == [0, 45]
