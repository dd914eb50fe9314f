"""The Kaldi data-dir importer (local/import_kaldi_dir.py), the shared text normalisers,
and the TEMPLATE recipe followed as a new user would: a corpus of English speech in
Kaldi layout, BPE units, every stage at tiny size."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from speechmoe.data.manifests import normalize_mandarin, normalize_words
from helpers import copy_recipe_tree, load_script, recipe_env

ROOT = Path(__file__).resolve().parents[1]


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate,
             subtype="PCM_16")
    return path


def write_table(path: Path, rows: dict) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in rows.items()), encoding="utf-8")


# --------------------------------------------------------------------------- normalisers


def test_mandarin_normaliser_keeps_english_words_and_speaks_numbers():
    assert normalize_mandarin("听beat it") == (["听", "BEAT", "IT"], None)
    assert normalize_mandarin("帮我放一首歌LET'S")[0][-1] == "LET'S"
    assert normalize_mandarin("我有3个苹果。")[0] == ["我", "有", "三个", "苹果"]
    assert normalize_mandarin("，。") == (None, "empty transcript")
    words, reason = normalize_mandarin("价格~便宜")
    assert words is None and "unspeakable character '~'" in reason


def test_word_normaliser_for_bpe_corpora():
    assert normalize_words("Hello, World! Don't stop — 42 times.") == (
        ["hello", "world", "don't", "stop", "42", "times"], None)
    assert normalize_words("Ça va?", "upper") == (["ÇA", "VA"], None)
    assert normalize_words(" ... ") == (None, "empty transcript")


# --------------------------------------------------------------------------- the importer


@pytest.fixture
def kaldi_dir(tmp_path):
    """A Kaldi data dir with good utterances and one of each kind of problem."""
    d = tmp_path / "corpus" / "train"
    d.mkdir(parents=True)
    wav = tmp_path / "audio"
    scp = {f"u{i}": str(write_wav(wav / f"u{i}.wav", 0.4 + 0.1 * i)) for i in range(4)}
    scp["u_missing"] = str(wav / "nowhere.wav")
    (wav / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    scp["u_corrupt"] = str(wav / "corrupt.wav")
    scp["u_8k"] = str(write_wav(wav / "u_8k.wav", 0.5, rate=8000))
    scp["u_empty_text"] = str(write_wav(wav / "u_empty_text.wav"))
    scp["u_cmd"] = f"cat {write_wav(wav / 'u_cmd.wav', 0.7)} |"
    scp["u_no_text"] = str(write_wav(wav / "u_no_text.wav"))
    text = {"u0": "Hello, world!", "u1": "The cat sat.", "u2": "don't stop", "u3": "A dog",
            "u_missing": "lost file", "u_corrupt": "bad file", "u_8k": "narrow band",
            "u_empty_text": "?!", "u_cmd": "from a pipe", "u_no_scp": "no audio entry"}
    write_table(d / "wav.scp", scp)
    write_table(d / "text", text)
    write_table(d / "utt2spk", {u: "spk1" for u in text})
    return d


def test_import_reports_every_bad_utterance_and_keeps_the_rest(kaldi_dir, tmp_path):
    from lhotse import CutSet

    out = tmp_path / "data"
    lm = out / "text" / "lm_text.txt"
    assert load_script("import_kaldi_dir").main([
        "--kaldi-dir", str(kaldi_dir), "--name", "train", "--out-dir", str(out),
        "--lm-text", str(lm), "--num-jobs", "1"]) == 0
    cuts = CutSet.from_file(out / "manifests" / "cuts_train.jsonl.gz")
    assert sorted(c.id for c in cuts) == ["u0", "u1", "u2", "u3", "u_cmd"]
    by_id = {c.id: c for c in cuts}
    assert by_id["u0"].supervisions[0].text == "hello world"
    assert by_id["u0"].supervisions[0].speaker == "spk1"
    assert abs(by_id["u_cmd"].duration - 0.7) < 1e-3
    assert by_id["u_cmd"].recording.sources[0].type == "command"
    assert by_id["u_cmd"].load_audio().shape[-1] == 11200  # the command runs again
    excluded = {line.split("\t")[0]: line.split("\t")[2] for line in
                (out / "manifests" / "excluded_train.txt").read_text().splitlines()}
    assert set(excluded) == {"u_missing", "u_corrupt", "u_8k", "u_empty_text", "u_no_scp"}
    assert excluded["u_missing"] == "file not found"
    assert excluded["u_corrupt"].startswith("unreadable audio")
    assert "8000 Hz" in excluded["u_8k"]
    assert excluded["u_empty_text"].startswith("empty transcript")
    assert "no wav.scp entry" in excluded["u_no_scp"]
    assert lm.read_text().splitlines() == ["hello world", "the cat sat", "don't stop", "a dog",
                                           "from a pipe"]
    log = (out / "log" / "import_train.log").read_text()
    assert "excluded 5 of 10 utterances" in log and "u_no_text" in log
    for kind in ("recordings", "supervisions"):
        assert (out / "manifests" / f"{kind}_train.jsonl.gz").is_file()


def test_segments_cut_recordings_into_utterances(tmp_path):
    from lhotse import CutSet

    d = tmp_path / "k"
    d.mkdir()
    write_table(d / "wav.scp", {"rec1": str(write_wav(tmp_path / "rec1.wav", 2.0))})
    write_table(d / "segments", {"a": "rec1 0.0 0.8", "b": "rec1 1.0 1.9", "c": "rec1 1.5 3.5"})
    write_table(d / "text", {"a": "one two", "b": "three", "c": "past the end"})
    out = tmp_path / "data"
    assert load_script("import_kaldi_dir").main([
        "--kaldi-dir", str(d), "--name", "s", "--out-dir", str(out), "--num-jobs", "1"]) == 0
    cuts = {c.id: c for c in CutSet.from_file(out / "manifests" / "cuts_s.jsonl.gz")}
    assert set(cuts) == {"a", "b"}
    assert (cuts["b"].start, round(cuts["b"].duration, 3)) == (1.0, 0.9)
    assert cuts["b"].supervisions[0].speaker is None
    assert "beyond the recording" in (out / "manifests" / "excluded_s.txt").read_text()


def test_missing_dir_or_file_is_one_clear_error(tmp_path):
    mod = load_script("import_kaldi_dir")
    with pytest.raises(FileNotFoundError, match="does not exist.*wav.scp"):
        mod.main(["--kaldi-dir", str(tmp_path / "nope"), "--name", "x", "--out-dir",
                  str(tmp_path / "d")])
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "wav.scp").write_text("")
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing .*k/text"):
        mod.main(["--kaldi-dir", str(tmp_path / "k"), "--name", "x", "--out-dir",
                  str(tmp_path / "d")])


def test_heldout_speakers_form_a_set_of_their_own(tmp_path):
    """--heldout-speakers: whole speakers leave the set (and the LM text) for train_dev; a
    rerun with another number imports again."""
    from lhotse import CutSet

    d = tmp_path / "k"
    d.mkdir()
    scp, text, spk = {}, {}, {}
    for s in range(4):
        for u in range(2):
            utt = f"s{s}-{u}"
            scp[utt] = str(write_wav(tmp_path / f"{utt}.wav"))
            text[utt], spk[utt] = f"speaker {s} says {u}", f"s{s}"
    for name, rows in (("wav.scp", scp), ("text", text), ("utt2spk", spk)):
        write_table(d / name, rows)
    out, mod = tmp_path / "data", load_script("import_kaldi_dir")
    args = ["--kaldi-dir", str(d), "--name", "train", "--out-dir", str(out), "--num-jobs", "1",
            "--lm-text", str(out / "lm.txt")]

    def speakers(name):
        cuts = CutSet.from_file(out / "manifests" / f"cuts_{name}.jsonl.gz")
        return sorted({c.supervisions[0].speaker for c in cuts})

    assert mod.main(args + ["--heldout-speakers", "1"]) == 0
    assert speakers("train") == ["s0", "s1", "s2"] and speakers("train_dev") == ["s3"]
    lm = (out / "lm.txt").read_text().splitlines()
    assert len(lm) == 6 and not any(line.startswith("speaker 3") for line in lm)
    assert mod.main(args + ["--heldout-speakers", "2"]) == 0  # other options: again
    assert speakers("train") == ["s0", "s2"] and speakers("train_dev") == ["s1", "s3"]
    with pytest.raises(ValueError, match="only 4 speakers"):
        mod.main(args + ["--heldout-speakers", "4"])


# --------------------------------------------------------------------------- TEMPLATE recipe

EN_WORDS = ("the cat dog sat ran on in a mat park red big small good day sun log hat we "
            "they saw".split())
EN_VOICES = {"train": ["en-us", "en-us+m3", "en-us+f2", "en-gb"], "dev": ["en-us+m1"],
             "test": ["en-us+f4"]}


def en_sentences(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(EN_WORDS) for _ in range(rng.randint(3, 6))) for _ in range(n)]


def english_kaldi_corpus(root: Path) -> Path:
    """Synthesized English (espeak-ng) in Kaldi layout: root/{train,dev,test}/."""
    from concurrent.futures import ThreadPoolExecutor

    # (dev: at least 10 after filtering, the trainer's duration buckets; test: 5 to decode)
    sizes = {"train": 36, "dev": 12, "test": 6}
    jobs = []
    for part, n in sizes.items():
        d = root / part
        (d / "wav").mkdir(parents=True)
        scp, text, spk = {}, {}, {}
        for i, sent in enumerate(en_sentences(n, seed=len(part))):
            voice = EN_VOICES[part][i % len(EN_VOICES[part])]
            utt = f"{part}-{i:03d}"
            wav = d / "wav" / f"{utt}.wav"
            scp[utt], spk[utt] = str(wav), voice.replace("+", "_")
            text[utt] = sent.capitalize() + "."  # a written form: the normaliser undoes it
            jobs.append((voice, sent, wav))
        write_table(d / "wav.scp", scp)
        write_table(d / "text", text)
        write_table(d / "utt2spk", spk)

    def synth(job):
        voice, sent, wav = job
        raw = wav.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), sent], check=True)
        subprocess.run(["sox", "-V1", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)],
                       check=True)
        raw.unlink()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(synth, jobs))
    with (root / "train" / "text").open("a") as f:
        f.write("train-999 no audio for this one\n")  # no wav.scp entry
    return root


# Tiny sizes; training in the main process (a DataLoader worker costs more than such an epoch).
TINY = ["--nj", "2", "--num-rirs", "3", "--rvb-fraction", "0", "--bpe-vocab-size", "30",
        "--lm-order", "2", "--num-epochs", "80", "--max-duration", "20", "--num-workers", "0",
        "--lr", "0.01", "--warmup-steps", "20", "--save-every-n", "0", "--avg", "2",
        "--beam", "8", "--max-active", "500", "--acoustic-scales", "0.7,1.0",
        "--model-overrides", json.dumps({"num_layers": 2, "embedding_layers": 1,
                                         "attention_every": 2, "d_model": 64, "ffn_dim": 128,
                                         "attention_ffn_dim": 128, "attention_heads": 2})]


@pytest.fixture(scope="module")
def template_recipe(tmp_path_factory):
    """egs/TEMPLATE copied and set up as its README says, then run on an English corpus."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng / sox not installed (make install)")
    top = copy_recipe_tree(tmp_path_factory.mktemp("tree"))
    shutil.copytree(ROOT / "egs" / "synth_mandarin" / "conf", top / "egs" / "synth_mandarin" /
                    "conf")
    recipe = top / "egs" / "mycorpus"
    shutil.copytree(ROOT / "egs" / "TEMPLATE", recipe)  # cp -r TEMPLATE mycorpus
    env = recipe_env("CORPUS")
    # before the configs are copied in, training says what to do
    r = subprocess.run(["./run.sh", "--stage", "4"], cwd=recipe, env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "cp ../synth_mandarin/conf/model/*.yaml" in r.stderr
    for f in (top / "egs" / "synth_mandarin" / "conf" / "model").glob("*.yaml"):
        shutil.copy(f, recipe / "conf" / "model")      # cp ../synth_mandarin/conf/model/*.yaml
    # before the corpus is set, stage 0 says where to set it
    r = subprocess.run(["./run.sh"], cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "db.sh" in r.stderr and "--corpus-dir" in r.stderr
    corpus = english_kaldi_corpus(tmp_path_factory.mktemp("corpus"))
    db = recipe / "db.sh"                               # $EDITOR db.sh
    db.write_text(db.read_text().replace("CORPUS=${CORPUS:-}", f"CORPUS={corpus}"))
    t0 = time.time()
    r = subprocess.run(["./run.sh", *TINY], cwd=recipe, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"run.sh failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-6000:]}")
    return {"recipe": recipe, "seconds": time.time() - t0, "out": r.stdout + r.stderr}


def test_template_recipe_runs_bpe_end_to_end(template_recipe):
    recipe = template_recipe["recipe"]
    lang = recipe / "data" / "lang"
    info = json.loads((lang / "lang.json").read_text())
    assert info["unit_type"] == "bpe" and info["metric"] == "WER"
    assert (lang / "bpe.model").is_file() and (lang / "TLG.fst").is_file()
    lexicon = (lang / "lexicon.txt").read_text().splitlines()
    assert any(line.startswith("cat ") and "\u2581" in line for line in lexicon)
    exp = recipe / "exp" / "moe_4e"
    results = json.loads((exp / "results.json").read_text())
    assert set(results) == {"test"} and set(results["test"]) == {"ctc_greedy", "wfst"}
    assert min(m["rate"] for m in results["test"].values()) < 100, results  # it learned
    assert results["test"]["wfst"]["metric"] == "WER"
    assert results["test"]["wfst"]["utterances"] == len(
        (recipe / "data" / "text" / "test.txt").read_text().splitlines())
    detail = json.loads((exp / "results_detail.json").read_text())
    assert detail["test"]["wfst"]["metric"] == "WER"
    assert detail["test"]["ctc_greedy"]["metric"] == "WER"
    assert detail["test"]["wfst"]["counts"]["ref_len"] == sum(
        len(line.split()) - 1 for line in (recipe / "data" / "text" / "test.txt")
        .read_text().splitlines())
    # WFST hypotheses are words (the open vocabulary's fragments joined), greedy ones
    # pieces (scored as joined words)
    assert info["open_vocabulary"] == "uniform"
    assert any(line.startswith("\u2581+") for line in lexicon)  # fragments in the lexicon
    hyp = next((exp / "decode").glob("*/wfst/test/hyp.txt")).read_text().splitlines()
    assert hyp and all("\u2581" not in line for line in hyp)
    scale = json.loads(next((exp / "decode").glob("*/wfst/acoustic_scale.json")).read_text())
    assert scale["tune_set"] == "dev" and "wer" in scale
    print(f"TEMPLATE (Kaldi dir, BPE) chain: {template_recipe['seconds']:.0f} s")


def test_template_recipe_stage0_reports_and_keeps_lm_text_to_train(template_recipe):
    data = template_recipe["recipe"] / "data"
    assert "train-999\t" in (data / "manifests" / "excluded_train.txt").read_text()
    lm = (data / "text" / "lm_text.txt").read_text().splitlines()
    assert len(lm) == 36 and all(line == line.lower() and "." not in line for line in lm)
    assert (data / "manifests" / "cuts_dev.jsonl.gz").is_file()
