"""End to end: the embedded recipe at tiny size, every stage, in a scratch copy of the tree.

One run of `./run.sh --tiny true` (a few minutes on 2 cores) is shared by the tests below.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import copy_recipe_tree, recipe_env, run_recipe

ROOT = Path(__file__).resolve().parents[1]
SETS = ("test_read", "test_chat", "test_spon")
DECODED = ("dev", "dev_unseen") + SETS  # stages 5-6 score the dev sets too

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng / sox not installed (make install)")


def run(recipe: Path, *args, check=True):
    r = run_recipe(recipe, *args)
    if check and r.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({r.returncode}):\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A copy of the repository's recipe machinery, with the tiny recipe run in it."""
    recipe = copy_recipe_tree(tmp_path_factory.mktemp("tree"), "synth_mandarin",
                              ignore=("RESULTS.md",)) / "egs" / "synth_mandarin"
    t0 = time.time()
    r = run(recipe, "--tiny", "true")
    recipe.joinpath("wall_seconds").write_text(f"{time.time() - t0:.0f}")
    recipe.joinpath("run_stdout.txt").write_text(r.stdout + r.stderr)
    return recipe


def test_every_artifact_exists(recipe):
    d, e = recipe / "data", recipe / "exp" / "moe_4e"
    expected = [
        d / "text" / "lm_text.txt",
        *[d / "manifests" / f"{k}_{s}.jsonl.gz" for k in ("recordings", "supervisions", "cuts")
          for s in ("train", "dev", "dev_unseen", "test_read", "test_chat", "test_spon_dry",
                    "dev_spon_dry")],
        d / "manifests" / "cuts_train_aug.jsonl.gz", d / "manifests" / "cuts_test_spon.jsonl.gz",
        d / "manifests" / "cuts_dev_spon.jsonl.gz",
        d / "rir" / "rirs_train.jsonl.gz", d / "rir" / "rirs_heldout.jsonl.gz",
        d / "rir" / "noise.jsonl.gz", d / "rir" / "noise_train.jsonl.gz",
        *[d / "fbank" / f"cuts_{s}.jsonl.gz"
          for s in ("train", "train_aug", "dev_spon") + DECODED],
        d / "corpus.json", d / "text" / "voices.json",
        d / "fbank" / "cmvn.pt", d / "fbank" / "features.json",
        *[d / "lang" / f for f in ("tokens.txt", "lexicon.txt", "words.txt", "lm.arpa",
                                   "G.fst", "L_disambig.fst", "TLG.fst")],
        e / "log" / "train.log", e / "params.json", e / "results.json",
        e / "results_detail.json",
    ]
    missing = [str(p) for p in expected if not p.is_file()]
    assert not missing, missing
    assert list(e.glob("epoch-*.pt")) and list(e.glob("avg-*.pt"))
    assert list((e / "tensorboard").glob("events.out.tfevents.*"))
    for method in ("ctc_greedy", "wfst"):
        for s in DECODED:
            out = next((e / "decode").glob(f"*/{method}/{s}"))
            for f in ("hyp.txt", "recogs.txt", "errs.txt", "summary.txt"):
                assert (out / f).is_file(), out / f
    assert "routing layer" in (e / "log" / "train.log").read_text()
    # the step's kernels chosen on this CPU (measured, or read from the tests' cache)
    assert "step kernels: channels_last " in (e / "log" / "train.log").read_text()


def test_test_sentences_never_in_training_or_lm_text(recipe):
    text = recipe / "data" / "text"

    def sentences(name):
        return {line.split("\t")[1] for line in (text / f"{name}.tsv").read_text(
            encoding="utf-8").splitlines()}

    lm = set((text / "lm_text.txt").read_text(encoding="utf-8").splitlines())
    train = sentences("train")
    assert train <= lm
    for s in SETS + ("dev", "dev_unseen"):
        held = sentences(s)
        assert held and not held & train and not held & lm, s
        for other in SETS + ("dev", "dev_unseen"):
            assert other == s or not held & sentences(other), (s, other)


def test_speakers_of_every_set_and_in_the_manifests(recipe):
    """Many drawn speakers, each reading a fixed number of training sentences; dev read by
    training speakers, dev_unseen by speakers of no other set; test_read by version 1's
    training voices (which are training speakers), test_chat and test_spon by the held-out
    variants; every supervision names its speaker."""
    from lhotse import CutSet

    from speechmoe.data.voices import LEGACY_HELDOUT_VOICES, LEGACY_TRAIN_VOICES

    d = recipe / "data"

    def speakers(name):
        return [c.supervisions[0].speaker for c in CutSet.from_file(
            d / "manifests" / f"cuts_{name}.jsonl.gz")]

    train = speakers("train")
    counts = {s: train.count(s) for s in set(train)}
    assert len(counts) == 300 // 5 and set(counts.values()) == {5}  # --tiny: 5 a speaker
    legacy = {v or "default" for v in LEGACY_TRAIN_VOICES}
    assert legacy <= set(counts)
    dev, unseen = set(speakers("dev")), set(speakers("dev_unseen"))
    assert dev <= set(counts) and len(unseen) == 30 // 3
    tests = {s: set(speakers(s)) for s in ("test_read", "test_chat", "test_spon_dry")}
    assert tests["test_read"] <= legacy
    assert tests["test_chat"] | tests["test_spon_dry"] <= set(LEGACY_HELDOUT_VOICES)
    assert not unseen & (set(counts) | dev | set().union(*tests.values()))
    assert not (tests["test_chat"] | tests["test_spon_dry"]) & set(counts)
    assert set(speakers("dev_spon_dry")) == unseen
    assert json.loads((d / "corpus.json").read_text())["version"] == 2


def test_no_held_out_room_or_noise_reaches_training(recipe):
    """train_aug uses training RIRs and training noise kinds only; test_spon the held-out
    RIRs and kinds; the features carry pitch (the recipe's default)."""
    from lhotse import CutSet, RecordingSet

    from speechmoe.data.rir import HELDOUT_NOISE_KINDS
    from speechmoe.features import FeatureConfig

    d = recipe / "data"
    held_rirs = {r.id for r in RecordingSet.from_file(d / "rir" / "rirs_heldout.jsonl.gz")}
    train_rirs = {r.id for r in RecordingSet.from_file(d / "rir" / "rirs_train.jsonl.gz")}
    assert held_rirs and train_rirs and not held_rirs & train_rirs

    def used(cut):
        """(RIR ids, noise recording ids) in a cut's lhotse transforms and tracks."""
        text = json.dumps(cut.to_dict())
        rirs = {r for r in held_rirs | train_rirs if f'"{r}"' in text}
        noises = set()
        for track in getattr(cut, "tracks", [])[1:]:
            noises.add(track.cut.recording.id)
        return rirs, noises

    # the manifests keep the transforms and mix tracks (the feature stage renders them)
    aug = CutSet.from_file(d / "manifests" / "cuts_train_aug.jsonl.gz")
    train_used = [used(c) for c in aug]
    assert any(r for r, _ in train_used) and any(n for _, n in train_used)
    assert not set().union(*(r for r, _ in train_used)) & held_rirs
    kinds = {n.split("-")[1] for _, ns in train_used for n in ns}
    assert kinds and not kinds & set(HELDOUT_NOISE_KINDS)
    spon = [used(c) for c in CutSet.from_file(d / "manifests" / "cuts_test_spon.jsonl.gz")]
    assert set().union(*(r for r, _ in spon)) <= held_rirs
    assert {n.split("-")[1] for _, ns in spon for n in ns} <= set(HELDOUT_NOISE_KINDS)
    # dev_spon: every cut reverberated and noisy, with training RIRs and noise kinds only
    dev_spon = [used(c) for c in CutSet.from_file(d / "manifests" / "cuts_dev_spon.jsonl.gz")]
    assert dev_spon and all(r and n for r, n in dev_spon)
    assert set().union(*(r for r, _ in dev_spon)) <= train_rirs
    assert not {n.split("-")[1] for _, ns in dev_spon for n in ns} & set(HELDOUT_NOISE_KINDS)
    assert FeatureConfig.for_cmvn(d / "fbank" / "cmvn.pt").pitch
    assert "features: " in (recipe / "exp" / "moe_4e" / "log" / "train.log").read_text()


def test_dev_spon_is_dev_unseen_read_at_test_spon_speeds(recipe):
    text = recipe / "data" / "text"

    def rows(name):
        return [line.split("\t") for line in (text / f"{name}.tsv").read_text(
            encoding="utf-8").splitlines()]

    dev, fast = rows("dev_unseen"), rows("dev_spon")
    assert len(fast) == len(dev) > 0
    for d, f in zip(dev, fast):
        assert f[0].startswith("dev_spon-") and (f[1:4], f[5:]) == (d[1:4], d[5:])
        assert 220 <= int(f[4]) <= 270 and 138 <= int(d[4]) <= 202


def test_acoustic_scale_is_chosen_on_dev_unseen_and_dev_spon_pooled(recipe):
    """decode.py tunes on both sets: the pooled rate is their errors over their reference
    characters together, and the chosen scale has the fewest."""
    e = recipe / "exp" / "moe_4e"
    scale = json.loads(next((e / "decode").glob("*/wfst/acoustic_scale.json")).read_text())
    assert scale["tune_set"] == "dev_unseen + dev_spon"
    per = scale["per_set"]
    assert set(per) == {"dev_unseen", "dev_spon"} and per["dev_unseen"]["ref_tokens"] > 0
    assert scale["utterances"] == sum(p["utterances"] for p in per.values())
    assert scale["ref_tokens"] == sum(p["ref_tokens"] for p in per.values())
    for s, rate in scale["cer"].items():
        errors = sum(p["cer"][s] * p["ref_tokens"] / 100 for p in per.values())
        assert abs(rate - 100 * errors / scale["ref_tokens"]) < 1e-6
    assert scale["cer"][str(scale["best"])] == min(scale["cer"].values())
    assert "acoustic scale on dev_unseen + dev_spon" in (e / "log" / "decode.log").read_text()


def test_results_and_trained_beats_untrained(recipe):
    """The briefly trained model's CER is below an untrained one's, through the same stages."""
    results = json.loads((recipe / "exp" / "moe_4e" / "results.json").read_text())
    assert set(results) == set(DECODED)
    assert all(set(v) == {"ctc_greedy", "wfst"} for v in results.values())

    import torch

    from speechmoe.checkpoint import load_checkpoint, save_checkpoint
    from speechmoe.inference import load_model_for_inference

    trained = next((recipe / "exp" / "moe_4e").glob("avg-*.pt"))
    _, system = load_model_for_inference(trained)
    from speechmoe.model import build_model

    torch.manual_seed(0)
    untrained_dir = recipe / "exp" / "untrained"
    meta = load_checkpoint(trained)
    save_checkpoint(untrained_dir / "epoch-1.pt", model=build_model(system.model).state_dict(),
                    epoch=1, step=0, params=meta["params"], model_config=meta["model_config"])
    env = recipe_env()
    common = ["--exp-dir", str(untrained_dir), "--lang-dir", "data/lang", "--cuts-dir",
              "data/fbank", "--sets", "test_read"]
    subprocess.run([sys.executable, "../../local/decode.py", *common, "--cmvn",
                    "data/fbank/cmvn.pt", "--avg", "1", "--acoustic-scales", "1.0",
                    "--beam", "10", "--max-active", "1000"], cwd=recipe, env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "../../local/score.py", *common], cwd=recipe, env=env,
                   check=True, capture_output=True)
    untrained = json.loads((untrained_dir / "results.json").read_text())["test_read"]
    ours = results["test_read"]
    assert ours["wfst"]["rate"] < untrained["wfst"]["rate"], (ours, untrained)
    assert ours["ctc_greedy"]["rate"] < untrained["ctc_greedy"]["rate"], (ours, untrained)
    assert ours["wfst"]["rate"] < 100.0


def test_what_the_routers_follow(recipe, tmp_path):
    """Validation logs each layer's speaker NMI; python -m speechmoe.analysis.routing on the
    trained model and dev_unseen writes its report and figure with every layer's NMIs."""
    e = recipe / "exp" / "moe_4e"
    epochs = [json.loads(line) for line in (e / "log" / "epochs.jsonl").read_text().splitlines()]
    assert all(0 <= layer["speaker_nmi"] <= 1 for layer in epochs[-1]["dev_routing"])
    assert "speaker NMI" in (e / "log" / "train.log").read_text()
    model = next(e.glob("avg-*.pt"))
    r = subprocess.run([sys.executable, "-m", "speechmoe.analysis.routing", "--model",
                        str(model), "--cuts", "data/fbank/cuts_dev_unseen.jsonl.gz",
                        "--lang-dir", "data/lang", "--cmvn", "data/fbank/cmvn.pt",
                        "--out", str(tmp_path)], cwd=recipe, env=recipe_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "routing.json").read_text())
    assert rep["speakers"] == 10 and rep["experts"] == 4
    for layer in rep["layers"]:
        assert sum(layer["expert_shares"]) == pytest.approx(1.0, abs=1e-3)
        assert len(layer["per_speaker"]) == 10 and "<blank>" in layer["per_tone"]
        assert all(0 <= layer[k] <= 1 for k in ("speaker_nmi", "token_nmi", "tone_nmi",
                                                 "initial_nmi", "final_nmi"))
    assert (tmp_path / "routing.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_utterance_is_scored_by_every_method_with_its_metric(recipe):
    from lhotse import CutSet

    results = json.loads((recipe / "exp" / "moe_4e" / "results.json").read_text())
    for s in DECODED:
        n = len(CutSet.from_file(recipe / "data" / "fbank" / f"cuts_{s}.jsonl.gz"))
        assert results[s]["wfst"] == {**results[s]["wfst"], "metric": "CER", "utterances": n}
        assert results[s]["ctc_greedy"]["metric"] == "toned-syllable ER"
        assert results[s]["ctc_greedy"]["utterances"] == n


def test_tokens_are_the_fixed_inventory(recipe, tmp_path):
    """tokens.txt is byte-identical in every syllable lang dir (the AISHELL-2 chain checks
    its own against the same bytes)."""
    from speechmoe.lang.symbols import write_tokens
    from speechmoe.lang.units import fixed_units

    write_tokens(fixed_units(), tmp_path / "tokens.txt")
    assert (recipe / "data" / "lang" / "tokens.txt").read_bytes() == \
        (tmp_path / "tokens.txt").read_bytes()


@pytest.fixture(scope="module")
def exported(recipe):
    run(recipe, "--tiny", "true", "--stage", "7", "--stop-stage", "7")
    return recipe / "exp" / "moe_4e" / "export"


def transcribe_cli(*args, stdin=None):
    exe = Path(sys.executable).parent / "speechmoe-transcribe"
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          input=stdin, env=recipe_env())


def test_export_stage_writes_a_checked_model_directory(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    for f in ("model.pt", "cmvn.pt", "features.json", "tokens.txt", "lang.json",
              "lexicon.txt", "words.txt", "TLG.fst", "model.torchscript.pt", "model.onnx",
              "model.int8.onnx"):
        assert f in manifest["files"] and (exported / f).is_file(), f
    assert manifest["acoustic_scale"] in (0.7, 1.0)  # the one the decoding stage chose


def test_transcribe_a_wav_file_from_the_command_line(recipe, exported, tmp_path):
    """A test utterance, also as 16 kHz stereo FLAC (the same samples: the same text) and
    as 44.1 kHz stereo FLAC (read back to 16 kHz close to the original samples; the text
    of a tiny model may then differ by a character, so only its form is checked)."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    from speechmoe.data.audio import read_audio

    wav = sorted((recipe / "data" / "wav" / "test_read").glob("*.wav"))[0]
    samples, rate = sf.read(wav, dtype="float32")
    flac16 = tmp_path / "stereo16k.flac"
    sf.write(flac16, np.stack([samples, samples], axis=1), rate)
    up = resample_poly(samples, 441, 160).astype(np.float32)
    flac44 = tmp_path / "stereo44k.flac"
    sf.write(flac44, np.stack([up, up], axis=1), 44100)
    back, _ = read_audio(flac44)
    n = min(len(back), len(samples))
    assert abs(len(back) - len(samples)) <= 2
    err = np.sum((back[:n] - samples[:n]) ** 2) / np.sum(samples[:n] ** 2)
    assert 10 * np.log10(1 / err) > 30, "resampled audio SNR below 30 dB"
    r = transcribe_cli(exported, wav, flac16, flac44)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(wav), str(flac16), str(flac44)]
    texts = [line.split("\t")[1] for line in lines]
    assert texts[0] and all(ord(c) >= 0x4E00 for c in texts[0]), texts
    assert texts[1] == texts[0]
    assert texts[2] and all(ord(c) >= 0x4E00 for c in texts[2]), texts
    assert "3 of 3 recordings transcribed (wfst, cpu)" in r.stderr and "RTF" in r.stderr
    r = transcribe_cli(exported, wav, "--onnx")  # the network in onnxruntime
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().split("\t")[1] == texts[0] and "onnxruntime" in r.stderr
    r = transcribe_cli(exported, wav, "--int8")  # int8 weights: the text may differ a little
    assert r.returncode == 0 and "onnxruntime, int8" in r.stderr, r.stderr
    text = r.stdout.strip().split("\t")[1]
    assert text and all(ord(c) >= 0x4E00 for c in text), text


def test_transcribe_reports_bad_files_and_goes_on(recipe, exported, tmp_path):
    wav = sorted((recipe / "data" / "wav" / "test_read").glob("*.wav"))[0]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF....WAVEfmt not audio at all")
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "short.wav", np.zeros(100, dtype=np.float32), 16000)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"good {wav}\nmissing {tmp_path / 'nope.wav'}\n")
    r = transcribe_cli(exported, "-", scp, stdin="\n".join(
        str(tmp_path / f) for f in ("empty.wav", "garbage.wav", "short.wav")) + "\n")
    assert r.returncode == 1
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["good"]
    err = r.stderr
    assert "empty.wav: unreadable audio" in err or "empty.wav: empty audio" in err
    assert "garbage.wav: unreadable audio" in err and "short.wav: too short" in err
    assert "missing: " in err and "nope.wav: no such file" in err and "Traceback" not in err
    assert "1 of 5 recordings transcribed" in err and "4 failed" in err


def test_recognizer_api_gives_tokens_with_times(recipe, exported):
    from speechmoe.recognizer import Recognizer

    wavs = sorted((recipe / "data" / "wav" / "test_read").glob("*.wav"))[:3]
    for method in ("wfst", "greedy"):
        rec = Recognizer.from_dir(exported, method=method, device="cpu")
        results = rec.transcribe(wavs)
        assert [r.name for r in results] == [str(w) for w in wavs]
        for r in results:
            assert r.method == method and len(r.tokens) == len(r.times)
            assert r.times == sorted(r.times) and all(0 <= t < r.duration for t in r.times)
        assert any(r.tokens for r in results)


def test_a_long_recording_is_read_in_segments_like_its_utterances(recipe, exported, tmp_path):
    """12 test utterances joined with 0.4 s pauses, through the long-form path with 8 s
    windows (several windows and segments at this size): segments in order with times on
    the recording's clock, the words those of the whole transcript, the CER close to the
    utterances' decoded one by one; the command line's segment, JSON and SRT output."""
    import kaldialign
    import numpy as np
    import soundfile as sf

    from speechmoe.longform import LongFormConfig
    from speechmoe.recognizer import Recognizer

    refs = dict(line.split("\t")[:2] for line in
                (recipe / "data" / "text" / "test_chat.tsv").read_text().splitlines())
    wavs = sorted((recipe / "data" / "wav" / "test_chat").glob("*.wav"))[:12]
    parts = []
    for w in wavs:
        x, sr = sf.read(w, dtype="float32")
        parts += [x, np.zeros(int(0.4 * sr), dtype=np.float32)]
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate(parts), sr)
    seconds = sum(len(x) for x in parts) / sr

    rec = Recognizer.from_dir(exported, device="cpu")
    one_by_one = rec.transcribe(wavs)
    rec.long_form = LongFormConfig(window_seconds=8.0, overlap_seconds=2.0,
                                   max_segment_seconds=6.0)
    whole = rec.transcribe([long])[0]
    segs = whole.segments
    assert len(segs) >= 3 and [s.index for s in segs] == list(range(len(segs)))
    assert all(0 <= s.start < s.end <= seconds + 0.1 for s in segs)
    assert all(a.end <= b.start + 0.5 for a, b in zip(segs, segs[1:]))
    assert whole.words == [w for s in segs for w in s.words] and whole.times == sorted(whole.times)
    ref = "".join(refs[w.stem].replace(" ", "") for w in wavs)

    def cer(hyp):
        return 100 * kaldialign.edit_distance(list(ref), list(hyp))["total"] / len(ref)

    per_utt, joined = cer("".join(r.text for r in one_by_one)), cer(whole.text)
    print(f"tiny model, {len(ref)} characters: CER one by one {per_utt:.2f}, "
          f"long-form {joined:.2f}")
    assert joined <= per_utt + 5.0

    r = transcribe_cli(exported, long, "--format", "segments", "--window-seconds", "8",
                       "--max-segment-seconds", "6")
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[3] for row in rows] == [s.text for s in segs]
    assert all(row[0] == str(long) and float(row[1]) < float(row[2]) for row in rows)
    out = tmp_path / "out"
    for fmt in ("json", "srt"):
        r = transcribe_cli(exported, long, "--format", fmt, "--window-seconds", "8",
                           "--max-segment-seconds", "6", "--output-dir", out)
        assert r.returncode == 0 and not r.stdout, r.stderr
    doc = json.loads((out / "long.json").read_text())
    assert doc["text"] == whole.text and len(doc["segments"]) == len(segs)
    srt = (out / "long.srt").read_text().split("\n\n")
    assert srt[0].splitlines()[0] == "1" and " --> " in srt[0].splitlines()[1]


def test_the_decoding_stage_reads_cuts_longer_than_a_window_in_windows(recipe, exported,
                                                                      monkeypatch):
    """speechmoe.decode.posteriors with 1.5 s windows: every test cut is longer, so each goes
    through the windowed path; the same cuts and frame counts as in one piece, and nearly
    the same greedy output (the windows see less context)."""
    from lhotse import CutSet

    from speechmoe.decode.greedy import ctc_greedy
    from speechmoe.decode.posteriors import posteriors
    from speechmoe.longform import LongFormConfig
    from speechmoe.recognizer import Recognizer

    monkeypatch.chdir(recipe)  # the cuts' feature paths are the recipe's
    rec = Recognizer.from_dir(exported, method="greedy", device="cpu")
    cuts = CutSet.from_file(recipe / "data" / "fbank" / "cuts_test_read.jsonl.gz").subset(
        first=6).to_eager()
    assert all(c.duration > 1.5 for c in cuts)
    whole = dict(posteriors(rec.model, cuts, rec.cmvn, 60.0, feature_config=rec.features))
    windowed = dict(posteriors(rec.model, cuts, rec.cmvn, 60.0, feature_config=rec.features,
                               long_form=LongFormConfig(window_seconds=1.5,
                                                        overlap_seconds=0.6)))
    assert sorted(whole) == sorted(windowed) == sorted(c.id for c in cuts)
    assert all(whole[k].shape == windowed[k].shape for k in whole)
    same = sum(ctc_greedy(whole[k])[0] == ctc_greedy(windowed[k])[0] for k in whole)
    print(f"greedy output unchanged by 1.5 s windows: {same} of {len(whole)} cuts")


def test_sherpa_onnx_runs_the_export_stages_model_and_graph(recipe, exported):
    """Stage 7's sherpa-onnx/ directory in sherpa-onnx's own OfflineRecognizer (its fbank,
    its padding, its FST decoder): on test utterances, batched, its greedy tokens and its
    TLG words equal what the toolkit's greedy search and WFST decoder find on the same
    model's log-probs from the toolkit's fbank (pitch held at the export's constants)."""
    pytest.importorskip("sherpa_onnx")
    import numpy as np
    import onnxruntime as ort
    import soundfile as sf

    from speechmoe.decode.greedy import ctc_greedy
    from speechmoe.decode.wfst import WfstDecoder
    from speechmoe.features import FeatureConfig, fbank
    from speechmoe.sherpa import sherpa_recognizer

    d = exported / "sherpa-onnx"
    settings = json.loads((d / "sherpa-onnx.json").read_text())
    assert {"model.onnx", "tokens.txt", "TLG.fst", "words.txt", "README.md"} <= set(
        settings["files"])
    cfg = FeatureConfig.load(exported / "features.json")
    words = {int(i): w for w, i in (line.split() for line in
                                     (d / "words.txt").read_text().splitlines())}
    tokens = {int(i): t for t, i in (line.split() for line in
                                      (d / "tokens.txt").read_text().splitlines())}
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = WfstDecoder(d / "TLG.fst", d / "words.txt", acoustic_scale=1.0,  # folded in
                          max_active=settings["decoding"].get("max_active", 3000))
    wavs = sorted((recipe / "data" / "wav" / "test_read").glob("*.wav"))[:20]
    audio = [sf.read(w, dtype="float32")[0] for w in wavs]
    got = {}
    for method in ("greedy", "wfst"):
        rec = sherpa_recognizer(d, method=method)
        streams = [rec.create_stream() for _ in audio]
        for s, x in zip(streams, audio):
            s.accept_waveform(16000, x)
        rec.decode_streams(streams)  # one padded batch
        got[method] = [s.result for s in streams]
    n_same_words = 0
    for i, x in enumerate(audio):
        fb = fbank(x, 16000, cfg)
        lp, n = sess.run(None, {"x": fb[None].numpy(), "x_lens": np.array([len(fb)])})
        lp = lp[0, : int(n[0])]
        assert list(got["greedy"][i].tokens) == [tokens[t] for t in ctc_greedy(lp)[0]]
        want = decoder.decode(lp)
        have = [words[w] for w in got["wfst"][i].words]
        n_same_words += have == want
    assert n_same_words == len(audio), f"{n_same_words} of {len(audio)} agree"


def test_the_sherpa_export_says_what_constant_pitch_costs_on_dev(recipe, exported):
    """The recipe's model hears pitch, which sherpa-onnx does not compute: stage 7 decodes
    dev_unseen with real and with constant pitch and writes both rates into
    sherpa-onnx.json, its README and the export log."""
    from lhotse import CutSet

    d = exported / "sherpa-onnx"
    pitch = json.loads((d / "sherpa-onnx.json").read_text())["pitch"]
    cost = pitch["cost"]
    dev = recipe / "data" / "fbank" / "cuts_dev_unseen.jsonl.gz"
    assert pitch["trained_with"] and cost["set"].endswith("cuts_dev_unseen.jsonl.gz")
    assert cost["metric"] == "CER" and cost["utterances"] == len(CutSet.from_file(dev))
    assert cost["ref_tokens"] > cost["utterances"]
    assert 0 <= cost["real_pitch"] and 0 <= cost["constant_pitch"]
    readme = (d / "README.md").read_text()
    assert f"{cost['constant_pitch']:.2f}% with this export's constant pitch" in readme
    log = (recipe / "exp" / "moe_4e" / "log" / "export.log").read_text()
    assert "what constant pitch costs" in log


def test_export_refuses_a_silent_sherpa_export_of_a_pitch_model(recipe, exported, tmp_path):
    """local/export.py --sherpa-onnx on the pitch model, without --pitch-cost-cuts or
    --sherpa-unmeasured-pitch: an error naming both, and nothing written."""
    out = tmp_path / "export"
    r = subprocess.run([sys.executable, str(recipe.parents[1] / "local" / "export.py"),
                        "--exp-dir", "exp/moe_4e", "--lang-dir", "data/lang", "--cmvn",
                        "data/fbank/cmvn.pt", "--avg", "1", "--acoustic-scale", "1.0",
                        "--out-dir", str(out), "--sherpa-onnx"],
                       cwd=recipe, capture_output=True, text=True, env=recipe_env())
    assert r.returncode != 0
    assert "--pitch-cost-cuts" in r.stderr and "--sherpa-unmeasured-pitch" in r.stderr
    assert not out.exists()


def test_onnx_and_torchscript_give_the_models_log_probs_on_real_features(recipe, exported):
    import numpy as np
    import onnxruntime as ort
    import torch

    from speechmoe.features import compute_features
    from speechmoe.data.audio import read_audio
    from speechmoe.recognizer import Recognizer

    rec = Recognizer.from_dir(exported, method="greedy", device="cpu")
    wavs = sorted((recipe / "data" / "wav" / "test_chat").glob("*.wav"))[:3]
    feats = [compute_features(read_audio(w)[0], 16000, rec.features, rec.cmvn) for w in wavs]
    lengths = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    with torch.no_grad():
        ref = rec.model(x, lengths).log_probs.numpy()
    sess = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    got_onnx = sess.run(None, {"features": x.numpy(), "lengths": lengths.numpy()})[0]
    got_ts = torch.jit.load(str(exported / "model.torchscript.pt"))(x, lengths)[0].detach()
    for got in (got_onnx, got_ts.numpy()):
        for b, n in enumerate(lengths.tolist()):
            np.testing.assert_allclose(got[b, :n], ref[b, :n], atol=1e-4)


def test_a_changed_model_directory_is_refused(exported, tmp_path):
    import shutil

    from speechmoe.model_dir import ModelDirError
    from speechmoe.recognizer import Recognizer

    copy = tmp_path / "export"
    shutil.copytree(exported, copy)
    with open(copy / "tokens.txt", "a") as f:
        f.write("extra 99999\n")
    with pytest.raises(ModelDirError, match="checksum"):
        Recognizer.from_dir(copy)
    r = transcribe_cli(copy, "x.wav")
    assert r.returncode == 2 and "checksum" in r.stderr


def test_rerun_skips_finished_work(recipe):
    t0 = time.time()
    r = run(recipe, "--tiny", "true")
    out = r.stdout + r.stderr
    assert "already decoded" in out and "features exist, skipping" in out
    print(f"rerun of the finished tiny recipe: {time.time() - t0:.0f} s")


def test_training_resumes_from_the_last_checkpoint(recipe):
    r = run(recipe, "--tiny", "true", "--stage", "4", "--stop-stage", "4", "--num-epochs", "31")
    log = (recipe / "exp" / "moe_4e" / "log" / "train.log").read_text()
    assert "resuming from exp/moe_4e/epoch-30.pt (epoch 31" in log, r.stdout[-2000:]
    assert (recipe / "exp" / "moe_4e" / "epoch-31.pt").is_file()


def test_run_sh_launches_data_parallel_training(recipe):
    """--world-size 2 goes through torchrun (gloo on CPU) and continues the same run."""
    r = run(recipe, "--tiny", "true", "--stage", "4", "--stop-stage", "4", "--num-epochs", "32",
            "--world-size", "2")
    assert "data-parallel training: torchrun --nproc-per-node 2" in r.stdout
    log = (recipe / "exp" / "moe_4e" / "log" / "train.log").read_text()
    assert "2 process(es)" in log and "resuming from exp/moe_4e/epoch-31.pt" in log
    assert (recipe / "exp" / "moe_4e" / "epoch-32.pt").is_file()


def test_dev_only_runs_compare_variants_on_dev(recipe):
    """run_tables.sh --dev-only: training only, a --variants system built from its base with
    its overrides, the dev measurements kept per run and compared in DEV.md; no decoding."""
    variant = '{"moe_2e_z": {"base": "moe_2e", "loss": {"z_loss": 0.001}}}'
    out = recipe / "exp" / "dev_tiny"
    r = subprocess.run(["./run_tables.sh", "--tiny", "true", "--dev-only", "true",
                        "--tables-dir", str(out), "--exp", str(out / "exp"),
                        "--systems", "b1 moe_2e_z", "--variants", variant],
                       cwd=recipe, env=recipe_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    for system in ("b1", "moe_2e_z"):
        for seed in (1, 2):
            rec = json.loads((out / "dev_runs" / system / f"seed{seed}.json").read_text())
            assert len(rec["epochs"]) == 2 and rec["steps"]["steps"] >= 2
            assert rec["config"]["loss"]["z_loss"] == (0.001 if system != "b1" else 0.0)
            assert rec["steps"]["median_grad_norm"] > 0
    assert not list((out / "exp").glob("*/seed*/decode*"))
    md = (out / "DEV.md").read_text()
    assert "| moe_2e_z | 2 |" in md and "stalled" in md
    assert set(json.loads((out / "dev.json").read_text())) == {"b1", "moe_2e_z"}


def test_tables_command_trains_reports_and_resumes(recipe):
    """run_tables.sh --tiny true: 2 systems x 2 seeds trained, decoded, scored; the per-run
    results, TABLES.md, tables.json and both figures written; a second call trains nothing;
    the report regenerates from the stored runs alone."""
    r = subprocess.run(["./run_tables.sh", "--tiny", "true"], cwd=recipe, env=recipe_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    tables = recipe / "exp" / "tables_tiny" / "tables"
    for system in ("b1", "moe_2e"):
        for seed in (1, 2):
            rec = json.loads((tables / "runs" / system / f"seed{seed}.json").read_text())
            assert rec["system"] == system and rec["seed"] == seed
            assert rec["normalization"] == "utterance" and len(rec["epochs"]) == 2
            assert rec["settings"]["ctc_topology"] == "compact"  # the lang dir's TLG
            assert all(rec["results"][s]["wfst"]["metric"] == "CER" for s in SETS)
            assert (rec["routing"] != []) == (system != "b1")
            assert (tables / "runs" / system / f"seed{seed}.utts.json.gz").is_file()
    md = (tables / "TABLES.md").read_text()
    assert "22.92" in md and "utterance" in md and "MoE-2e" in md
    assert json.loads((tables / "tables.json").read_text())
    for png in ("fig2_dev_loss.png", "routing_moe_2e.png"):
        assert (tables / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumable: nothing left to train
    r = subprocess.run(["./run_tables.sh", "--tiny", "true"], cwd=recipe, env=recipe_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0 and "0 of 4 runs to do" in r.stdout + r.stderr
    # finished runs made with other settings are never mixed in
    r = subprocess.run(["./run_tables.sh", "--tiny", "true", "--num-epochs", "3"], cwd=recipe,
                       env=recipe_env(), capture_output=True, text=True)
    assert r.returncode != 0 and "other settings" in r.stdout + r.stderr, r.stderr[-2000:]
    assert "num_epochs: 2 there, 3 now" in r.stdout + r.stderr
    # the report alone, from the stored runs (the experiment dirs gone)
    shutil.rmtree(recipe / "exp" / "tables_tiny" / "b1")
    (tables / "TABLES.md").unlink()
    r = subprocess.run(["./run_tables.sh", "--tiny", "true", "--report-only", "true"],
                       cwd=recipe, env=recipe_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tables / "TABLES.md").read_text() == md
