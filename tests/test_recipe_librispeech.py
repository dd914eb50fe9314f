"""egs/librispeech: the corpus layout, its errors, bad files, the LM text choice, the recipe's
values, and the stage chain on a tiny corpus in the real LibriSpeech layout (English
synthesized by espeak-ng, written as flac).

The layout checks run local/prepare_librispeech.py in-process on sine-tone flacs (seconds);
the chain runs `./run.sh --corpus-dir ...` with tiny sizes in a scratch copy of the tree.
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_recipe_tree, load_script, recipe_env, run_recipe

ROOT = Path(__file__).resolve().parents[1]
URL = "https://www.openslr.org/12"
EVAL = ("dev-clean", "dev-other", "test-clean", "test-other")

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="espeak-ng / sox not installed (make install)")


def tone_flac(path: Path, seconds: float = 0.6, rate: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate,
             format="FLAC", subtype="PCM_16")


def layout(root: Path, parts: dict, make_audio=tone_flac) -> Path:
    """root/LibriSpeech/<part>/<spk>/<chapter>/{<utt>.flac, <spk>-<chapter>.trans.txt};
    parts: part -> [(utt, text)] with utt = <spk>-<chapter>-<n>. Returns root."""
    for part, rows in parts.items():
        chapters: dict = {}
        for utt, text in rows:
            spk, chapter, _ = utt.split("-")
            d = root / "LibriSpeech" / part / spk / chapter
            chapters.setdefault(d / f"{spk}-{chapter}.trans.txt", []).append(f"{utt} {text}\n")
            make_audio(d / f"{utt}.flac", text)
        for trans, lines in chapters.items():
            trans.write_text("".join(lines), encoding="utf-8")
    return root


def tone_corpus(root: Path, train_parts=("train-clean-100",)) -> Path:
    rows = {p: [(f"{100 + i}-{10 + i}-{n:04d}", "HELLO THERE IT'S A TEST")
                for i in range(3) for n in range(2)] for p in train_parts}
    for k, part in enumerate(EVAL):
        rows[part] = [(f"{200 + k}-20-0000", "ANOTHER SMALL SENTENCE")]
    return layout(root, rows, lambda path, text: tone_flac(path))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A scratch copy of the recipe machinery (nothing is written into the repository;
    the configs are copied, not linked)."""
    return copy_recipe_tree(tmp_path_factory.mktemp("tree"), "librispeech") / "egs" / \
        "librispeech"


def run(recipe: Path, *args, env=None):
    return run_recipe(recipe, *args, env=env or recipe_env("LIBRISPEECH"))


def prepare(*args):
    return load_script("prepare_librispeech").main([str(a) for a in args])


# --------------------------------------------------------------------------- layout errors


def test_unset_corpus_location_names_db_sh_and_where_to_get_it(tree):
    r = run(tree, "--stop-stage", "0")
    assert r.returncode != 0
    assert "db.sh" in r.stderr and "--corpus-dir" in r.stderr and URL in r.stderr


def test_missing_corpus_fails_at_once_naming_the_place(tree, tmp_path):
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(tmp_path / "nowhere"))
    assert r.returncode != 0
    assert f"{tmp_path / 'nowhere'} does not exist" in r.stderr and URL in r.stderr
    (tmp_path / "empty").mkdir()
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(tmp_path / "empty"))
    assert r.returncode != 0
    assert f"no LibriSpeech directory in {tmp_path / 'empty'}" in r.stderr
    assert "Traceback" not in r.stderr


def test_incomplete_corpus_lists_everything_missing(tree, tmp_path):
    root = tone_corpus(tmp_path / "c")
    ls = root / "LibriSpeech"
    shutil.rmtree(ls / "test-other")
    for trans in (ls / "dev-clean").rglob("*.trans.txt"):
        trans.unlink()
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(root))
    assert r.returncode != 0
    assert "incomplete" in r.stderr
    assert f"{ls / 'test-other'}/ (the test-other part: test-other.tar.gz)" in r.stderr
    assert f"{ls / 'dev-clean'}/ has no <spk>/<chapter>/<spk>-<chapter>.trans.txt" in r.stderr
    assert URL in r.stderr and "Traceback" not in r.stderr
    r = run(tree, "--stop-stage", "0", "--corpus-dir", str(root), "--test-sets", "test_other2")
    assert r.returncode != 0 and "--eval-sets test_other2: not a LibriSpeech" in r.stderr


# --------------------------------------------------------------------------- layout handling


def test_bad_files_are_reported_and_the_rest_prepared(tmp_path):
    """A zero-byte flac (lhotse 1.33's prepare_librispeech raises AudioLoadingError on it),
    a corrupt one, one at 8 kHz, a flac with no transcript line, a line with no flac, an
    id-only line: each reported by path and reason with a summary; the rest prepared."""
    from lhotse import CutSet

    root = tone_corpus(tmp_path / "corpus")
    ch = root / "LibriSpeech" / "train-clean-100" / "100" / "10"
    with (ch / "100-10.trans.txt").open("a", encoding="utf-8") as f:
        f.write("100-10-0100 AN EMPTY FILE\n")
        f.write("100-10-0101 A CORRUPT FILE\n")
        f.write("100-10-0102 EIGHT KILOHERTZ\n")
        f.write("100-10-0103 NO SUCH FLAC\n")
        f.write("100-10-0104\n")                         # no text (lhotse's reader fails)
    (ch / "100-10-0100.flac").write_bytes(b"")
    (ch / "100-10-0101.flac").write_bytes(b"fLaC\0\0\0\x22 this is not a flac stream")
    tone_flac(ch / "100-10-0102.flac", rate=8000)
    tone_flac(ch / "100-10-0104.flac")
    tone_flac(ch / "100-10-0105.flac")                     # no transcript line

    out = tmp_path / "data"
    assert prepare("--corpus-dir", root / "LibriSpeech", "--out-dir", out,  # the dir itself
                   "--num-jobs", "1") == 0
    m = out / "manifests"
    rows = [line.split("\t") for line in (m / "excluded_train.txt").read_text(
        encoding="utf-8").splitlines()]
    reasons = {utt: (path, reason) for utt, path, reason in rows}
    assert set(reasons) == {f"100-10-010{i}" for i in range(6)}
    assert reasons["100-10-0100"] == (str(ch / "100-10-0100.flac"), "empty file (0 bytes)")
    assert reasons["100-10-0101"][1].startswith("unreadable audio")
    assert reasons["100-10-0102"][1] == "sampled at 8000 Hz, expected 16000 Hz"
    assert reasons["100-10-0103"] == (str(ch / "100-10-0103.flac"), "audio missing (listed "
                                      "in 100-10.trans.txt:6, no such file)")
    assert reasons["100-10-0104"][1] == "empty transcript"
    assert reasons["100-10-0105"][1] == "no transcript in 100-10.trans.txt"
    log = (out / "log" / "prepare_librispeech.log").read_text(encoding="utf-8")
    assert "train: excluded 6 of 12 utterances (" in log
    for kind in ("empty file: 1", "unreadable audio: 1", "sampled at 8000 Hz, expected 16000 "
                 "Hz: 1", "audio missing: 1", "empty transcript: 1", "no transcript in "
                 "100-10.trans.txt: 1"):
        assert kind in log, kind
    assert "it reads a view of the corpus without them" in log

    sets = {s: CutSet.from_file(m / f"cuts_{s}.jsonl.gz").to_eager()
            for s in ("train", "dev_clean", "dev_other", "test_clean", "test_other")}
    assert len(sets["train"]) == 6 and all(len(sets[s]) == 1 for s in sets if s != "train")
    c = sets["train"][0]
    assert c.supervisions[0].text == "hello there it's a test"
    assert c.supervisions[0].speaker == c.id.split("-")[0] and c.id == c.recording.id
    # manifests point at the corpus, not at the temporary view lhotse read
    for cuts in sets.values():
        for c in cuts:
            src = Path(c.recording.sources[0].source)
            assert src.is_file() and not src.is_symlink() and str(src).startswith(str(root))
    assert not (out / "librispeech_view").exists()
    lm = (out / "text" / "lm_text.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(lm) == sorted(c.supervisions[0].text for c in sets["train"])
    assert "LM text: the 6 training transcripts (no librispeech-lm-norm.txt" in log


def test_clean_corpus_goes_straight_through_lhotse_and_reruns_say_why(tmp_path):
    from lhotse import CutSet

    root = tone_corpus(tmp_path / "corpus", ("train-clean-100", "train-clean-360"))
    out = tmp_path / "data"
    assert prepare("--corpus-dir", root, "--out-dir", out, "--num-jobs", "1") == 0
    logf = out / "log" / "prepare_librispeech.log"
    log = logf.read_text(encoding="utf-8")
    assert "view" not in log and "train: all 6 utterances usable" in log
    assert len(CutSet.from_file(out / "manifests" / "cuts_train.jsonl.gz")) == 6
    assert prepare("--corpus-dir", root, "--out-dir", out, "--num-jobs", "1") == 0
    assert "made with these options" in logf.read_text(encoding="utf-8")
    # two training parts (comma or space separated) make one set
    assert prepare("--corpus-dir", root, "--out-dir", out, "--train-parts",
                   "train-clean-100,train-clean-360") == 0
    log = logf.read_text(encoding="utf-8")
    assert ("other options (train_parts ['train-clean-100'] -> ['train-clean-100', "
            "'train-clean-360']): redoing stage 0") in log
    cuts = CutSet.from_file(out / "manifests" / "cuts_train.jsonl.gz").to_eager()
    assert len(cuts) == 6  # the same ids in both parts: the second copies are duplicates
    excluded = (out / "manifests" / "excluded_train.txt").read_text(encoding="utf-8")
    assert excluded.count("duplicate utterance id (also in train-clean-100)") == 6
    with pytest.raises(ValueError, match="--train-parts train-clean-999: not a LibriSpeech"):
        prepare("--corpus-dir", root, "--out-dir", out, "--train-parts", "train-clean-999")


def test_lm_text_from_the_librispeech_lm_corpus_or_the_transcripts(tmp_path):
    root = tone_corpus(tmp_path / "corpus")
    lines = [f"BOOK LINE NUMBER {n} ISN'T IT" for n in range(10)]
    (root / "librispeech-lm-norm.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "data"
    assert prepare("--corpus-dir", root, "--out-dir", out, "--lm-max-sentences", "4") == 0
    lm = (out / "text" / "lm_text.txt").read_text(encoding="utf-8").splitlines()
    # every 3rd line (10 lines, at most 4), then the 6 training transcripts
    assert lm == [f"book line number {n} isn't it" for n in (0, 3, 6, 9)] + \
        ["hello there it's a test"] * 6
    assert prepare("--corpus-dir", root, "--out-dir", out, "--lm-corpus", "none") == 0
    assert len((out / "text" / "lm_text.txt").read_text().splitlines()) == 6
    with pytest.raises(FileNotFoundError, match="--lm-corpus .*nothere.txt: no such file"):
        prepare("--corpus-dir", root, "--out-dir", out, "--lm-corpus", tmp_path / "nothere.txt")


# --------------------------------------------------------------------------- the recipe


def test_recipe_values_only_what_differs_and_the_shared_configs(tmp_path):
    from test_recipe_defaults import resolve, run_sh_assignments, shared_defaults

    args = ("--corpus-dir", "/corpus/librispeech")
    r, v = resolve(tmp_path, "librispeech", *args)
    assert r.returncode == 0, r.stderr
    assert {k: v[k] for k in ("unit_type", "bpe_vocab_size", "text_norm", "open_vocabulary",
                              "dev_set", "tune_sets", "test_sets", "train_parts", "lm_corpus",
                              "exp_dir")} == dict(
        unit_type="bpe", bpe_vocab_size="500", text_norm="lower", open_vocabulary="uniform",
        dev_set="dev_clean", tune_sets="dev_clean dev_other",
        test_sets="dev_clean dev_other test_clean test_other", train_parts="train-clean-100",
        lm_corpus="auto", exp_dir="exp/moe_4e")
    assert v["eval_sets"] == "dev_clean dev_other test_clean test_other"
    defaults = shared_defaults(tmp_path)
    own, _ = run_sh_assignments("librispeech")
    same = [n for n in own if n in defaults and v[n] == defaults[n]]
    assert not same, f"egs/librispeech/run.sh repeats tools/asr_defaults.sh: {same}"
    r, _ = resolve(tmp_path, "librispeech", "--help")
    assert r.returncode == 0 and "  --train-parts train-clean-100" in r.stdout.splitlines()
    # the paper-scale configs are AISHELL-2's files, linked, not copied
    confs = ROOT / "egs" / "librispeech" / "conf" / "model"
    paper = ROOT / "egs" / "aishell2" / "conf" / "model"
    assert {p.name for p in confs.glob("*.yaml")} == {p.name for p in paper.glob("*.yaml")}
    for p in confs.glob("*.yaml"):
        assert p.is_symlink() and p.resolve() == (paper / p.name).resolve()


# --------------------------------------------------------------------------- the stage chain

TRAIN_TEXT = [
    "THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "WE READ A GOOD BOOK TODAY",
    "THE SUN IS VERY WARM", "SHE WALKED TO THE OLD HOUSE", "HE DOESN'T LIKE THE RAIN",
    "THE BIRDS SING IN THE MORNING", "MY FRIEND HAS A RED CAR", "THEY PLAYED BY THE RIVER",
    "THE CHILDREN WENT TO SCHOOL",
]
DEV_TEXT = ["THE DOG SAT IN THE HOUSE", "A CAT RAN TO THE RIVER", "WE LIKE THE WARM SUN",
            "THE OLD CAR IS RED", "SHE READ IN THE PARK"]
TEST_TEXT = ["THE BIRDS RAN TO SCHOOL", "MY DOG LIKES THE RAIN", "THE SUN SAT ON THE HOUSE",
             "THEY WALKED IN THE MORNING", "A GOOD FRIEND SAT BY THE CAR"]
VOICES = ["en-us", "en-us+f2", "en-us+m3"]


def synth_flac(path: Path, text: str, voice: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(raw), text.lower()],
                   check=True, capture_output=True)
    subprocess.run(["sox", "-R", "-V1", str(raw), "-r", "16000", "-c", "1", "-b", "16",
                    str(path)], check=True, capture_output=True)
    raw.unlink()


def synth_corpus(root: Path) -> Path:
    """Synthesized English in the LibriSpeech layout, with a zero-byte, a corrupt and an
    untranscribed flac in train-clean-100."""
    rows = {"train-clean-100": [(f"{11 + v}-100-{i:04d}", t) for v in range(len(VOICES))
                                for i, t in enumerate(TRAIN_TEXT)]}
    # dev-clean holds 10 (validation buckets); the others 5 (decoding buckets)
    rows["dev-clean"] = [(f"21-200-{i:04d}", t) for i, t in enumerate(DEV_TEXT + DEV_TEXT)]
    rows["dev-other"] = [(f"22-200-{i:04d}", t) for i, t in enumerate(DEV_TEXT)]
    rows["test-clean"] = [(f"31-300-{i:04d}", t) for i, t in enumerate(TEST_TEXT)]
    rows["test-other"] = [(f"32-300-{i:04d}", t) for i, t in enumerate(TEST_TEXT)]
    voice = {"11": VOICES[0], "12": VOICES[1], "13": VOICES[2], "21": VOICES[0],
             "22": VOICES[2], "31": VOICES[1], "32": VOICES[2]}
    layout(root, rows, lambda path, text: synth_flac(path, text, voice[path.name[:2]]))
    ch = root / "LibriSpeech" / "train-clean-100" / "11" / "100"
    (ch / "11-100-0000.flac").write_bytes(b"")                        # zero bytes
    (ch / "11-100-0001.flac").write_bytes(b"fLaC garbage, not audio")  # corrupt
    shutil.copy(ch / "11-100-0002.flac", ch / "11-100-0099.flac")     # no transcript line
    return root


TINY = ["--nj", "2", "--num-rirs", "3", "--rvb-fraction", "0", "--lm-order", "2",
        "--bpe-vocab-size", "60", "--num-epochs", "6", "--max-duration", "20",
        "--num-workers", "0", "--lr", "0.005", "--warmup-steps", "20", "--save-every-n", "0",
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
    return {"recipe": tree, "seconds": time.time() - t0, "out": r.stdout + r.stderr}


def test_chain_produces_results_for_every_test_set(chain):
    recipe = chain["recipe"]
    exp = recipe / "exp" / "moe_4e"
    results = json.loads((exp / "results.json").read_text())
    counts = {"dev_clean": 10, "dev_other": 5, "test_clean": 5, "test_other": 5}
    assert set(results) == set(counts)
    for name, n in counts.items():
        assert set(results[name]) == {"ctc_greedy", "wfst"}
        for method in ("ctc_greedy", "wfst"):
            assert results[name][method]["metric"] == "WER", (name, method)
            assert results[name][method]["utterances"] == n, (name, method)
            assert 0 <= results[name][method]["rate"] <= 300
    scale = json.loads(next((exp / "decode").glob("*/wfst/acoustic_scale.json")).read_text())
    assert scale["tune_set"] == "dev_clean + dev_other" and scale["utterances"] == 15, scale
    lang = json.loads((recipe / "data" / "lang" / "lang.json").read_text())
    assert (lang["unit_type"], lang["metric"], lang["open_vocabulary"]) == \
        ("bpe", "WER", "uniform")
    print(f"LibriSpeech layout chain: {chain['seconds']:.0f} s")


def test_chain_reports_the_broken_files_and_keeps_the_lm_text_to_train(chain):
    data = chain["recipe"] / "data"
    excluded = (data / "manifests" / "excluded_train.txt").read_text()
    assert "11-100-0000\t" in excluded and "empty file (0 bytes)" in excluded
    assert "11-100-0001\t" in excluded and "unreadable audio" in excluded
    assert "11-100-0099\t" in excluded and "no transcript in 11-100.trans.txt" in excluded
    assert "train: excluded 3 of 31 utterances" in chain["out"]
    lm = set((data / "text" / "lm_text.txt").read_text(encoding="utf-8").splitlines())
    assert lm == {t.lower() for t in TRAIN_TEXT}
