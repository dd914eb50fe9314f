import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _two_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """The step-kernel choices the tests' trainings measure go to a cache of their own
    (inherited by the recipes they run), not to the user's ~/.cache/speechmoe."""
    old = os.environ.get("SPEECHMOE_CACHE")
    os.environ["SPEECHMOE_CACHE"] = str(tmp_path_factory.mktemp("speechmoe-cache"))
    yield
    if old is None:
        os.environ.pop("SPEECHMOE_CACHE", None)
    else:
        os.environ["SPEECHMOE_CACHE"] = old


@pytest.fixture
def root() -> Path:
    return ROOT


# Short real sentences (word-segmented), for a corpus small enough for unit-level tests.
SENTENCES = [
    "今天 天气 很 好", "我们 一起 去 学校", "他 在 北京 工作", "这 本 书 很 有意思",
    "人民 生活 水平 不断 提高", "经济 发展 速度 加快", "中国 人民 的 朋友",
    "新年 讲话 充满 希望", "请 把 门 关上", "我 想 喝 一 杯 茶", "明天 我们 开会",
    "孩子 们 喜欢 读书", "城市 建设 取得 成绩", "农民 的 收入 增加", "大家 都 很 高兴",
    "这 是 一个 好 消息", "房间 有点 小", "服务 态度 很 好", "价格 比较 便宜",
    "质量 还 不错", "我 很 喜欢 这 本 书", "你们 什么 时候 来", "国家 主席 发表 讲话",
    "世界 各国 的 朋友",
]


def _synth_corpus(root, sentences, voices=("", "f2")):
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    from speechmoe.data.synth import SynthJob, synthesize
    from speechmoe.lang.units import pronounce

    jobs, texts = [], {}
    for i, words in enumerate(sentences):
        pinyin = " ".join(u for w in words.split() for u in pronounce(w))
        utt = f"utt{i:03d}"
        jobs.append(SynthJob(utt, pinyin, voices[i % len(voices)], 170, 50,
                             root / "wav" / f"{utt}.wav"))
        texts[utt] = words
    failures = synthesize(jobs, num_jobs=2)
    assert not failures, failures
    cuts = []
    for job in jobs:
        rec = Recording.from_file(job.wav, recording_id=job.utt_id)
        sup = SupervisionSegment(job.utt_id, job.utt_id, 0.0, rec.duration, channel=0,
                                 text=texts[job.utt_id])
        cuts.append(MonoCut(job.utt_id, 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(cuts)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """24 synthesized utterances with fbank, CMVN and a lang dir (bigram LM, TLG).

    Returns a dict of paths: root, cuts (features attached), cmvn, lang.
    """
    import shutil

    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng / sox not installed (make install)")
    import torch

    from speechmoe.data.fbank import compute_fbank
    from speechmoe.features import GlobalCMVN, add_deltas
    from speechmoe.lang.graph import build_tlg
    from speechmoe.lang.kneser_ney import estimate_kneser_ney
    from speechmoe.lang.symbols import write_lexicon, write_tokens
    from speechmoe.lang.units import build_lexicon, fixed_units

    root = tmp_path_factory.mktemp("tiny_corpus")
    raw = _synth_corpus(root, SENTENCES)
    raw.to_file(root / "cuts_raw.jsonl.gz")
    cuts, bad = compute_fbank(raw, root / "fbank", "all", num_jobs=1)
    assert not bad
    cuts.to_file(root / "cuts.jsonl.gz")
    cmvn = GlobalCMVN(120)
    for c in cuts:
        cmvn.accumulate(add_deltas(torch.from_numpy(c.load_features())))
    cmvn.save(root / "cmvn.pt")
    lang = root / "lang"
    lang.mkdir()
    sentences = [s.split() for s in SENTENCES]
    lexicon, _ = build_lexicon(w for s in sentences for w in s)
    write_lexicon(lexicon, lang / "lexicon.txt")
    write_tokens(fixed_units(), lang / "tokens.txt")  # closed vocabulary: fast
    estimate_kneser_ney(sentences, order=2, unk=False).write_arpa(lang / "lm.arpa")
    build_tlg(lang, lang / "lm.arpa", lang / "TLG.fst", order=2)
    return {"root": root, "cuts": root / "cuts.jsonl.gz", "raw_cuts": root / "cuts_raw.jsonl.gz",
            "cmvn": root / "cmvn.pt", "lang": lang}


TINY_MODEL = {"num_layers": 2, "embedding_layers": 1, "attention_every": 2, "d_model": 32,
              "ffn_dim": 64, "attention_ffn_dim": 64, "attention_heads": 2}


@pytest.fixture
def train_params(tiny_corpus, tmp_path):
    """TrainParams for a few fast steps on the tiny corpus (tweak fields per test)."""
    from speechmoe.train.params import TrainParams

    return TrainParams(
        exp_dir=str(tmp_path / "exp"), model_config=str(ROOT / "egs/synth_mandarin/conf/model/"
                                                        "moe_4e.yaml"),
        lang_dir=str(tiny_corpus["lang"]), train_cuts=[str(tiny_corpus["cuts"])],
        dev_cuts=str(tiny_corpus["cuts"]), cmvn=str(tiny_corpus["cmvn"]), num_epochs=2,
        max_duration=12.0, num_buckets=2, lr=2e-3, warmup_steps=5, num_workers=0,
        log_interval=2, save_every_n=3, keep_last_n=2, model_overrides=dict(TINY_MODEL))
