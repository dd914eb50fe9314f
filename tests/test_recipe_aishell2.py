"""egs/aishell2: the corpus layout, its errors, and the stage chain on a tiny corpus laid
out like the real AISHELL-2 (synthesized speech, a few speakers).

The layout checks run local/prepare_aishell2.py in-process on sine-tone wavs (seconds);
the chain runs `./run.sh --corpus-dir ...` with tiny sizes in a scratch copy of the tree.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_recipe_tree, load_script, recipe_env
from helpers import run_recipe as run

ROOT = Path(__file__).resolve().parents[1]
URL = "https://www.aishelltech.com/aishell_2"
# Word-segmented sentences. Most dev/test sentences hold words that the training text (the
# LM text) never has: 大学 中学 工人 新书 国人 高速 天天 学生, made of syllables that training
# does have, so that only the open vocabulary (every character is a word) can decode them.
TRAIN_TEXT = [
    "今天 天气 很 好", "我们 一起 去 学校", "他 在 北京 工作", "这 本 书 很 有意思",
    "人民 生活 水平 提高", "经济 发展 速度 加快", "中国 人民 的 朋友", "新年 讲话 充满 希望",
    "明天 我们 开会", "孩子 们 喜欢 读书", "城市 建设 取得 成绩", "大家 都 很 高兴",
    "这 是 一个 好 消息", "价格 比较 便宜", "我 想 喝 一 杯 茶", "国家 发展 很 快",
]
# (at least 5 each: decoding buckets them into 5 duration buckets)
DEV_TEXT = ["我们 的 大学", "中学 生活 很 好", "工人 在 工作", "新书 很 便宜",
            "国人 都 喜欢 读书", "他 是 学生"]
TEST_TEXT = ["大学 生活 很 好", "我 想 去 中学", "高速 发展", "这 本 新书 很 好",
             "工人 们 很 高兴", "天天 读书"]
TRAIN_SPEAKERS = ["", "m1", "f2", "m3", "f4", "m5"]  # espeak-ng voice variants as speakers

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng / sox not installed (make install)")


def tone(path: Path, seconds: float = 0.6, rate: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate,
             subtype="PCM_16")


def layout(root: Path, parts: dict, make_wav=tone) -> Path:
    """root/AISHELL-2/iOS/<part>/{trans.txt, wav/<SPK>/<UTT>.wav}; parts: part ->
    [(spk, utt, text)]. Returns root (the dir that contains AISHELL-2/)."""
    for part, rows in parts.items():
        d = root / "AISHELL-2" / "iOS" / part
        (d / "wav").mkdir(parents=True, exist_ok=True)
        (d / "trans.txt").write_text("".join(f"{utt}\t{text}\n" for _, utt, text in rows),
                                     encoding="utf-8")
        for spk, utt, text in rows:
            make_wav(d / "wav" / spk / f"{utt}.wav")
    return root


def tone_corpus(root: Path) -> Path:
    rows = {"data": [(f"C000{s}", f"IC000{s}W000{i}", "今天天气很好") for s in range(1, 5)
                     for i in range(3)],
            "dev": [("D0001", "ID0001W0001", "我们一起去学校")],
            "test": [("T0001", "IT0001W0001", "他在北京工作")]}
    return layout(root, rows)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A scratch copy of the recipe machinery (nothing is written into the repository)."""
    return copy_recipe_tree(tmp_path_factory.mktemp("tree"), "aishell2") / "egs" / "aishell2"


# --------------------------------------------------------------------------- layout errors


def test_unset_corpus_location_names_db_sh_and_where_to_get_it(tree):
    r = run(tree, "--stop-stage", "0", env=recipe_env("AISHELL2"))
    assert r.returncode != 0
    assert "db.sh" in r.stderr and "--corpus-dir" in r.stderr and URL in r.stderr


def test_missing_corpus_fails_at_once_naming_the_place(tree, tmp_path):
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(tmp_path / "nowhere"))
    assert r.returncode != 0
    assert f"{tmp_path / 'nowhere'} does not exist" in r.stderr and URL in r.stderr
    (tmp_path / "empty").mkdir()
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(tmp_path / "empty"))
    assert r.returncode != 0
    assert f"no AISHELL-2/iOS directory in {tmp_path / 'empty'}" in r.stderr
    assert "Traceback" not in r.stderr


def test_incomplete_corpus_lists_everything_missing(tree, tmp_path):
    root = tone_corpus(tmp_path / "c")
    ios = root / "AISHELL-2" / "iOS"
    (ios / "dev" / "trans.txt").unlink()
    shutil.rmtree(ios / "test" / "wav")
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(root))
    assert r.returncode != 0
    assert "incomplete" in r.stderr
    assert f"{ios / 'dev' / 'trans.txt'} (transcripts)" in r.stderr
    assert f"{ios / 'test' / 'wav'}/ (audio" in r.stderr
    assert URL in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- layout handling


def test_bad_files_are_reported_and_the_rest_prepared(tmp_path):
    """Missing, corrupt and zero-length audio, a stray wav, empty and unspeakable text:
    each reported by path and reason with a summary; lhotse's recipe still runs."""
    from lhotse import CutSet

    root = tone_corpus(tmp_path / "corpus")
    train = root / "AISHELL-2" / "iOS" / "data"
    with (train / "trans.txt").open("a", encoding="utf-8") as f:
        f.write("IC0001W0100\t听beat it\n")          # English, lower case in the source
        f.write("IC0001W0101\t这个文件不存在\n")       # listed, no wav
        f.write("IC0001W0102\t文件坏了\n")            # corrupt wav
        f.write("IC0001W0103\t\n")                   # empty transcript
        f.write("IC0001W0104\t价格~便宜\n")           # unspeakable symbol
        f.write("IC0001W0105\t没有声音\n")            # zero-length wav
        f.write("\n")                                # a blank line (lhotse's reader fails)
    tone(train / "wav" / "C0001" / "IC0001W0100.wav")
    (train / "wav" / "C0001" / "IC0001W0102.wav").write_bytes(b"RIFF\0\0\0\0WAVEfmt garbage")
    tone(train / "wav" / "C0001" / "IC0001W0103.wav")
    tone(train / "wav" / "C0001" / "IC0001W0104.wav")
    tone(train / "wav" / "C0001" / "IC0001W0105.wav", seconds=0)
    tone(train / "wav" / "C0002" / "IC0002W0999.wav")  # no transcript

    out = tmp_path / "data"
    # pointing at the AISHELL-2 dir itself is accepted too
    assert load_script("prepare_aishell2").main([
        "--corpus-dir", str(root / "AISHELL-2"), "--out-dir", str(out), "--num-dev", "3",
        "--num-jobs", "1"]) == 0
    m = out / "manifests"
    rows = [line.split("\t") for line in (m / "excluded_train.txt").read_text(
        encoding="utf-8").splitlines()]
    reasons = {utt: (path, reason) for utt, path, reason in rows}
    assert set(reasons) == {"IC0001W0101", "IC0001W0102", "IC0001W0103", "IC0001W0104",
                            "IC0001W0105", "IC0002W0999"}
    assert reasons["IC0001W0101"][1].startswith("audio missing")
    assert reasons["IC0001W0102"] [1].startswith("unreadable audio")
    assert reasons["IC0001W0102"][0] == str(train / "wav" / "C0001" / "IC0001W0102.wav")
    assert reasons["IC0001W0103"][1].startswith("empty transcript")
    assert "unspeakable character '~'" in reasons["IC0001W0104"][1]
    assert reasons["IC0001W0105"][1].startswith("zero-length audio")
    assert reasons["IC0002W0999"][1] == "no transcript in trans.txt"
    log = (out / "log" / "prepare_aishell2.log").read_text(encoding="utf-8")
    assert "train: excluded 6 of 19 utterances (" in log
    assert "audio missing: 1" in log and "unreadable audio: 1" in log

    sets = {s: CutSet.from_file(m / f"cuts_{s}.jsonl.gz").to_eager()
            for s in ("train", "train_dev", "dev_ios", "test_ios")}
    ids = {s: {c.id for c in cuts} for s, cuts in sets.items()}
    assert ids["dev_ios"] == {"ID0001W0001"} and ids["test_ios"] == {"IT0001W0001"}
    assert len(ids["train"]) + len(ids["train_dev"]) == 13
    spk = {s: {c.supervisions[0].speaker for c in cuts} for s, cuts in sets.items()}
    assert spk["train_dev"] and not spk["train_dev"] & spk["train"]  # whole speakers
    english = [c for c in sets["train"] + sets["train_dev"] if c.id == "IC0001W0100"][0]
    assert english.supervisions[0].text == "听 BEAT IT"
    assert sets["dev_ios"][0].supervisions[0].text == "我们 一起 去 学校"
    # manifests point at the corpus, not at the temporary view lhotse read
    for cuts in sets.values():
        for c in cuts:
            src = Path(c.recording.sources[0].source)
            assert src.is_file() and not src.is_symlink() and str(src).startswith(str(root))
    assert not (out / "aishell2_view").exists()
    lm = (out / "text" / "lm_text.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(lm) == sorted(c.supervisions[0].text for c in sets["train"])
    # a rerun skips
    assert load_script("prepare_aishell2").main([
        "--corpus-dir", str(root), "--out-dir", str(out)]) == 0


def test_clean_corpus_goes_straight_through_lhotse(tmp_path):
    from lhotse import CutSet

    root = tone_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    assert load_script("prepare_aishell2").main([
        "--corpus-dir", str(root), "--out-dir", str(out), "--num-dev", "1",
        "--num-jobs", "1"]) == 0
    log = (out / "log" / "prepare_aishell2.log").read_text(encoding="utf-8")
    assert "view" not in log and "train: all 12 utterances usable" in log
    cuts = CutSet.from_file(out / "manifests" / "cuts_train.jsonl.gz")
    assert len(cuts) == 9  # one held-out speaker of three utterances
    assert all(c.id == c.supervisions[0].id == c.recording.id for c in cuts)


# --------------------------------------------------------------------------- the stage chain


def synth_corpus(root: Path) -> Path:
    """Synthesized Mandarin in the AISHELL-2 layout, with a corrupt and a missing wav."""
    from speechmoe.data.synth import SynthJob, synthesize
    from speechmoe.lang.units import pronounce

    rows = {"data": [], "dev": [], "test": []}
    # Each sentence is read by three speakers, so the two held out as train_dev never
    # take a syllable away from the training text (the units come from it).
    n = len(TRAIN_SPEAKERS)
    for i, words in enumerate(TRAIN_TEXT):
        for s in (i % n, (i + 1) % n, (i + 2) % n):
            rows["data"].append((f"C000{s + 1}", f"IC000{s + 1}W{i:04d}", words,
                                 TRAIN_SPEAKERS[s]))
    # Dev and test are other speakers (D0001, T0001) read by training voices: the tiny model
    # does not learn to carry syllables over to an unheard voice from 46 utterances, and the
    # open-vocabulary check below needs its syllables on dev/test, not its generalisation.
    rows["dev"] = [("D0001", f"ID0001W{i:04d}", w, "m3") for i, w in enumerate(DEV_TEXT)]
    rows["test"] = [("T0001", f"IT0001W{i:04d}", w, "f4") for i, w in enumerate(TEST_TEXT)]
    jobs = []
    for part, items in rows.items():
        d = root / "AISHELL-2" / "iOS" / part
        d.mkdir(parents=True)
        (d / "trans.txt").write_text("".join(f"{u}\t{w.replace(' ', '')}\n"
                                             for _, u, w, _ in items), encoding="utf-8")
        for spk, utt, words, voice in items:
            pinyin = " ".join(x for w in words.split() for x in pronounce(w))
            jobs.append(SynthJob(utt, pinyin, voice, 170, 50, d / "wav" / spk / f"{utt}.wav"))
    assert not synthesize(jobs, num_jobs=2, desc="synthesize AISHELL-2 layout")
    train = root / "AISHELL-2" / "iOS" / "data"
    (train / "wav" / "C0001" / "IC0001W0000.wav").write_bytes(b"not a wav file at all")
    (train / "wav" / "C0002" / "IC0002W0001.wav").unlink()  # listed in trans.txt
    return root


# Tiny sizes; training in the main process (a DataLoader worker costs more than such an epoch).
TINY = ["--nj", "2", "--num-dev", "10", "--num-rirs", "3", "--heldout-rirs", "0",
        "--rvb-fraction", "0.5", "--lm-order", "2", "--num-epochs", "100", "--max-duration", "20",
        "--num-workers", "0", "--lr", "0.01", "--warmup-steps", "30", "--save-every-n", "0",
        "--avg", "2", "--beam", "8", "--max-active", "500", "--acoustic-scales", "0.7,1.0",
        "--model-overrides", json.dumps({"num_layers": 2, "embedding_layers": 1,
                                         "attention_every": 2, "d_model": 64, "ffn_dim": 128,
                                         "attention_ffn_dim": 128, "attention_heads": 2})]


@pytest.fixture(scope="module")
def chain(tree, tmp_path_factory):
    corpus = synth_corpus(tmp_path_factory.mktemp("corpora"))
    t0 = time.time()
    r = run(tree, "--corpus-dir", str(corpus), *TINY)
    if r.returncode != 0:
        raise AssertionError(f"run.sh failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-6000:]}")
    return {"recipe": tree, "corpus": corpus, "seconds": time.time() - t0,
            "out": r.stdout + r.stderr}


def test_chain_produces_results_for_the_aishell2_test_sets(chain):
    recipe = chain["recipe"]
    exp = recipe / "exp" / "moe_4e"
    results = json.loads((exp / "results.json").read_text())
    assert set(results) == {"dev_ios", "test_ios"}
    rates = [m["rate"] for methods in results.values() for m in methods.values()]
    assert all(set(methods) == {"ctc_greedy", "wfst"} for methods in results.values())
    assert all(0 <= r <= 200 for r in rates)
    # the stages are connected: the briefly trained model recognises something
    assert min(rates) < 100, results
    detail = json.loads((exp / "results_detail.json").read_text())
    assert detail["dev_ios"]["wfst"]["metric"] == "CER"
    # every utterance is scored by both methods, each number names its metric and count
    for name, n in (("dev_ios", len(DEV_TEXT)), ("test_ios", len(TEST_TEXT))):
        assert results[name]["wfst"]["metric"] == "CER"
        assert results[name]["ctc_greedy"]["metric"] == "toned-syllable ER"
        for method in ("ctc_greedy", "wfst"):
            assert results[name][method]["utterances"] == n, (name, method)
    # the acoustic scale was tuned on the held-out training speakers, not on dev/test
    scale = json.loads(next((exp / "decode").glob("*/wfst/acoustic_scale.json")).read_text())
    assert scale["tune_set"] == "train_dev"
    data = recipe / "data"
    for f in ("manifests/cuts_train_rvb.jsonl.gz", "fbank/cuts_train_dev.jsonl.gz",
              "lang/TLG.fst", "lang/lang.json"):
        assert (data / f).is_file(), f
    assert json.loads((data / "lang" / "lang.json").read_text())["unit_type"] == "syllable"
    print(f"AISHELL-2 layout chain: {chain['seconds']:.0f} s")


def test_chain_reports_the_broken_files(chain):
    excluded = (chain["recipe"] / "data" / "manifests" / "excluded_train.txt").read_text()
    assert "IC0001W0000\t" in excluded and "unreadable audio" in excluded
    assert "IC0002W0001\t" in excluded and "audio missing" in excluded
    assert "train: excluded 2 of 48 utterances" in chain["out"]


def test_chain_lm_text_is_the_training_transcripts_only(chain):
    data = chain["recipe"] / "data" / "text"
    lm = set((data / "lm_text.txt").read_text(encoding="utf-8").splitlines())
    train = {line.split("\t")[1] for line in (data / "train.txt").read_text(
        encoding="utf-8").splitlines()}
    assert lm == train
    for held in ("train_dev", "dev_ios", "test_ios"):
        ids = [line.split("\t")[0] for line in (data / f"{held}.txt").read_text(
            encoding="utf-8").splitlines()]
        assert ids and not set(ids) & {line.split("\t")[0] for line in (
            data / "train.txt").read_text(encoding="utf-8").splitlines()}


def test_chain_decodes_words_the_lm_text_never_had(chain):
    """The open vocabulary on real acoustics: the recipe's graph and its trained model output
    characters of dev/test words that the LM text never had (as one-character words of the
    lexicon). The tiny model is weak and the acoustic scale tuned on train_dev (sentences
    of the LM text) favours the LM's words, so this decodes again at a fixed, higher scale."""
    import shutil

    recipe = chain["recipe"]
    data = recipe / "data"
    lm_words = {w for line in (data / "text" / "lm_text.txt").read_text(
        encoding="utf-8").splitlines() for w in line.split()}
    unseen_chars = {c for w in " ".join(DEV_TEXT + TEST_TEXT).split() if w not in lm_words
                    for c in w}
    exp = recipe / "exp" / "moe_4e_scale"
    shutil.copytree(recipe / "exp" / "moe_4e", exp, ignore=shutil.ignore_patterns("decode"))
    r = subprocess.run([sys.executable, str(ROOT / "local" / "decode.py"), "--exp-dir", str(exp),
                        "--lang-dir", "data/lang", "--cmvn", "data/fbank/cmvn.pt",
                        "--cuts-dir", "data/fbank", "--sets", "dev_ios", "test_ios",
                        "--methods", "wfst", "--avg", "2", "--acoustic-scales", "5.0",
                        "--beam", "12"], cwd=recipe, env=recipe_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = set()
    for name in ("dev_ios", "test_ios"):
        hyp = next((exp / "decode").glob(f"*/wfst/{name}/hyp.txt")).read_text(encoding="utf-8")
        out |= {w for line in hyp.splitlines() for w in line.split("\t")[1].split()
                if w not in lm_words}
    assert out & unseen_chars, (out, unseen_chars)


def test_chain_tokens_are_the_fixed_inventory(chain, tmp_path):
    from speechmoe.lang.symbols import write_tokens
    from speechmoe.lang.units import fixed_units

    write_tokens(fixed_units(), tmp_path / "tokens.txt")
    tokens = chain["recipe"] / "data" / "lang" / "tokens.txt"
    assert tokens.read_bytes() == (tmp_path / "tokens.txt").read_bytes()
