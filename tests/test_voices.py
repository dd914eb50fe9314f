"""Speaker voices of the embedded corpus (speechmoe.data.voices) and the corpus record."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechmoe.data.corpus import corpus_of_cuts, corpus_record
from speechmoe.data.voices import (classify_tones, draw_voices, load_voices, save_voices,
                                   spread, tone_shapes)

ROOT = Path(__file__).resolve().parents[1]
have_espeak = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def test_the_same_seed_draws_the_same_voices_and_speakers_differ(tmp_path):
    names = [f"S{i:04d}" for i in range(1, 41)]
    a, b = draw_voices(names, 7), draw_voices(names, 7)
    assert a == b and [v.variant_text() for v in a] == [v.variant_text() for v in b]
    assert draw_voices(names, 8) != a
    assert draw_voices(names[:10], 7) == a[:10]  # a larger corpus keeps the first speakers
    assert len({v.variant_text().split("\n", 2)[2] for v in a}) == len(a)  # all differ
    assert {v.gender for v in a} == {"male", "female"}
    for v in a:  # the ranges of the module's docstring
        assert 0.9 <= v.warp <= 1.1 and 1.3 <= v.f0_max / v.f0_base <= 1.61
        assert (70 <= v.f0_base <= 115) if v.gender == "male" else (135 <= v.f0_base <= 215)
        assert v.klatt in (0, 1, 2, 3, 5, 6) and len(v.formants) == 9
    save_voices(a, tmp_path / "voices.json")
    assert list(load_voices(tmp_path / "voices.json").values()) == a


def test_the_variant_says_the_f0_the_warp_will_undo():
    v = draw_voices(["S0001"], 3)[0]
    text = v.variant_text()
    pitch = next(line for line in text.splitlines() if line.startswith("pitch "))
    base, top = map(int, pitch.split()[1:])
    assert base == round(v.f0_base / v.warp) and top == round(v.f0_max / v.warp)
    assert v.espeak_rate(170) == round(170 / v.warp)
    assert text.startswith("language variant\nname S0001\n")
    assert sum(line.startswith("formant ") for line in text.splitlines()) == 9


def test_a_bad_voice_list_names_its_file(tmp_path):
    bad = tmp_path / "voices.json"
    bad.write_text('[{"name": "S1"}]')
    with pytest.raises(ValueError, match="voices.json: not a speaker voice list"):
        load_voices(bad)


def _glide(f0_hz, sr=16000):
    """A voiced syllable: 5 harmonics along an F0 track (Hz per sample)."""
    phase = 2 * np.pi * np.cumsum(f0_hz) / sr
    return sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2


def test_tone_shapes_and_classes_of_four_synthetic_contours():
    """Level, rising, dipping and falling F0 tracks (the contours of tones 1-4, 0.3 s each)
    come out in that order with the right slopes; shuffled, the classes follow them."""
    n = 4800
    t = np.linspace(0.0, 1.0, n)
    # (within half an octave of their median: features.pitch folds octave jumps back)
    tracks = [np.full(n, 200.0), 150 + 70 * t, 150 - 20 * np.sin(np.pi * t) + 25 * t,
              230 - 80 * t]
    shapes = tone_shapes([_glide(f) for f in tracks])
    # the first and last fifths, as tone_shapes takes them
    semis = [12 * math.log2(f[-n // 5:].mean() / f[: n // 5].mean()) for f in tracks]
    for (s, _, e), want in zip(shapes, semis):
        assert abs((e - s) - want) < 0.6, (shapes, semis)
    assert classify_tones(shapes) == [1, 2, 3, 4]
    order = [2, 0, 3, 1]
    assert classify_tones([shapes[i] for i in order]) == [[1, 2, 3, 4][i] for i in order]
    with pytest.raises(ValueError, match="four syllables"):
        classify_tones(shapes[:3])


def test_spread_of_long_term_spectra_by_hand():
    ln10 = math.log(10) / 10  # 1 dB in natural-log units
    a, b, c = np.zeros(40), np.full(40, 2 * ln10), np.full(40, 6 * ln10)
    s = spread([a, b, c])
    assert s["voices"] == 3
    assert s["mean_pairwise_db"] == pytest.approx((2 + 6 + 4) / 3)
    assert s["mean_nearest_db"] == pytest.approx((2 + 2 + 4) / 3)
    assert s["band_std_db"] == pytest.approx(np.std([0, 2, 6]))
    with pytest.raises(ValueError, match="two voices"):
        spread([a])


@pytest.mark.skipif(not have_espeak, reason="espeak-ng / sox not installed (make install)")
def test_two_drawn_speakers_sound_different_and_keep_their_tones(tmp_path):
    import soundfile as sf

    from speechmoe.data.synth import SynthJob, synthesize_one
    from speechmoe.data.voices import TONE_PROBE, espeak_data_dirs, long_term_spectrum

    voices = draw_voices(["S0001", "S0002"], 1)
    dirs = espeak_data_dirs(voices, tmp_path / "espeak")
    spectra, lengths = [], []
    for v in voices:
        syllables = []
        for k, syl in enumerate(TONE_PROBE):
            wav = tmp_path / f"{v.name}_{k}.wav"
            assert synthesize_one(SynthJob(v.name, syl, v.name, v.espeak_rate(170), 50, wav,
                                           espeak_path=dirs[v.name], warp=v.warp)) is None
            x, sr = sf.read(wav)
            assert sr == 16000
            syllables.append(x)
        assert classify_tones(tone_shapes(syllables)) == [1, 2, 3, 4], v
        spectra.append(long_term_spectrum(np.concatenate(syllables)))
        lengths.append(sum(map(len, syllables)))
    assert spread(spectra)["mean_pairwise_db"] > 1.0  # a male and a female voice
    assert abs(lengths[0] / lengths[1] - 1) < 0.35  # the warp does not change the rate much


@pytest.mark.skipif(not have_espeak, reason="espeak-ng / sox not installed (make install)")
def test_hundreds_of_speakers_all_synthesize(tmp_path):
    """espeak-ng fails every synthesis once a data dir lists more than 349 voices (its 131
    languages included): 450 speakers go into data dirs of 100, and the last one speaks."""
    from speechmoe.data.synth import SynthJob, synthesize_one
    from speechmoe.data.voices import VOICES_PER_DATA_DIR, espeak_data_dirs

    voices = draw_voices([f"S{i:04d}" for i in range(450)], 2)
    dirs = espeak_data_dirs(voices, tmp_path / "espeak")
    assert len(set(dirs.values())) == -(-450 // VOICES_PER_DATA_DIR) == 5
    for v in (voices[0], voices[-1]):
        assert synthesize_one(SynthJob(v.name, "ni3 hao3", v.name, 170, 50,
                                       tmp_path / f"{v.name}.wav", espeak_path=dirs[v.name],
                                       warp=v.warp)) is None


def test_corpus_record(tmp_path):
    assert corpus_record(tmp_path) is None
    (tmp_path / "fbank").mkdir()
    (tmp_path / "corpus.json").write_text(json.dumps({"corpus": "x", "version": 2}))
    assert corpus_of_cuts(tmp_path / "fbank" / "cuts_dev.jsonl.gz")["version"] == 2
    (tmp_path / "corpus.json").write_text("[1]")
    with pytest.raises(ValueError, match="corpus.json: expected an object"):
        corpus_record(tmp_path)


def test_stage_0_refuses_a_corpus_of_version_1(tmp_path):
    """A data dir made before the speakers (text/.done, no corpus.json) is not mixed with
    version 2's sets: stage 0 stops before writing anything."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "prepare_synth_mandarin", ROOT / "local" / "prepare_synth_mandarin.py")
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / ".done").touch()
    with pytest.raises(RuntimeError, match="corpus version 1 .*move .* aside"):
        prep.main(["--out-dir", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name != "prepare.log") == [
        ".done", "log", "text"]
