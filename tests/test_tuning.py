"""The WFST acoustic scale: one search over candidates (speechmoe/decode/tuning.py), the
scale an argument of the decode call, and export refusing an untuned scale."""

import json
import shutil

import pytest
import torch

from helpers import ROOT, load_script
from speechmoe.checkpoint import save_checkpoint
from speechmoe.config import load_config
from speechmoe.decode.tuning import DEFAULT_SCALES, choose_scale, parse_scales
from speechmoe.expdir import ExpDir
from speechmoe.lang.symbols import num_real_tokens, read_tokens
from speechmoe.lang.tokenizer import write_lang_info
from speechmoe.model import build_model


def test_parse_scales():
    assert parse_scales("0.7,1.0, 1.4") == [0.7, 1.0, 1.4]
    for bad, why in [("", "no candidate"), ("1,x", "comma-separated numbers"),
                     ("1,0", "> 0"), ("1,1.0", "twice")]:
        with pytest.raises(ValueError, match=why):
            parse_scales(bad)
    assert list(DEFAULT_SCALES) == sorted(DEFAULT_SCALES)


def test_errors_are_pooled_over_the_tuning_sets():
    """Set a (10 characters) prefers 1.0, set b (2 characters) prefers 2.0; the summed
    errors decide (each set weighs by its size), a tie goes to the first candidate."""
    refs = {"a": {"u1": ["一二三四五"], "u2": ["六七八九十"]}, "b": {"v": ["甲乙"]}}
    hyps = {"a": {1.0: {"u1": ["一二三四五"], "u2": ["六七八九"]},           # 1 deletion
                  2.0: {"u1": ["一二三"], "u2": ["六七八九十", "百"]}},      # 2 del + 1 ins
            "b": {1.0: {"v": []}, 2.0: {"v": ["甲乙"]}}}                     # 2 del / 0
    choice = choose_scale(refs, hyps, "CER")
    assert {s: st.errors for s, st in choice.pooled.items()} == {1.0: 3, 2.0: 3}
    assert choice.best == 1.0  # a tie: the first candidate
    assert choice.per_set["b"][2.0].rate == 0.0 and choice.per_set["a"][1.0].rate == 10.0
    hyps["a"][2.0]["u1"] = ["一二"]
    assert choose_scale(refs, hyps, "CER").best == 1.0
    hyps["a"][1.0]["u1"] = []  # now 1.0 makes 5 + 1 + 2 = 8 errors, 2.0 makes 4
    choice = choose_scale(refs, hyps, "CER")
    assert choice.best == 2.0
    out = choice.to_json()
    assert out["tune_set"] == "a + b" and out["best"] == 2.0
    assert out["utterances"] == 3 and out["ref_tokens"] == 12
    assert out["cer"] == {1.0: pytest.approx(800 / 12), 2.0: pytest.approx(400 / 12)}
    assert out["per_set"]["b"] == {"cer": {1.0: 100.0, 2.0: 0.0}, "utterances": 1,
                                   "ref_tokens": 2}


def test_sets_decoded_at_other_scales_are_refused():
    refs = {"a": {"u": ["一"]}, "b": {"v": ["二"]}}
    hyps = {"a": {1.0: {"u": ["一"]}}, "b": {2.0: {"v": ["二"]}}}
    with pytest.raises(ValueError, match="decoded at"):
        choose_scale(refs, hyps, "CER")
    with pytest.raises(ValueError, match="no tuning set"):
        choose_scale({}, {}, "CER")


@pytest.fixture
def exp_with_model(tiny_corpus, tmp_path):
    """An experiment dir holding one (untrained) epoch checkpoint for the tiny lang dir."""
    from conftest import TINY_MODEL
    from speechmoe.features import FeatureConfig

    classes = num_real_tokens(read_tokens(tiny_corpus["lang"] / "tokens.txt"))
    system = load_config(ROOT / "egs/synth_mandarin/conf/model/moe_4e.yaml", overrides={
        "model": {**TINY_MODEL, "num_classes": classes,
                  "input_dim": FeatureConfig.for_cmvn(tiny_corpus["cmvn"]).model_dim}})
    torch.manual_seed(0)
    exp = tmp_path / "exp"
    save_checkpoint(exp / "epoch-1.pt", model=build_model(system.model).state_dict(), epoch=1,
                    step=0, params={}, model_config=system.to_dict())
    return exp


def _export(exp, tiny_corpus, *extra):
    export = load_script("export")
    lang = exp.parent / "lang"  # the tiny lang dir with the lang.json the lang stage writes
    if not lang.is_dir():
        shutil.copytree(tiny_corpus["lang"], lang)
        write_lang_info(lang, "syllable", "CER")
    return export.main(["--exp-dir", str(exp), "--lang-dir", str(lang),
                        "--cmvn", str(tiny_corpus["cmvn"]), "--avg", "1", "--no-torchscript",
                        "--no-onnx", *extra])


def test_export_refuses_a_model_without_a_tuned_scale(exp_with_model, tiny_corpus):
    with pytest.raises(FileNotFoundError, match="no tuned acoustic scale for avg-1-1.pt"):
        _export(exp_with_model, tiny_corpus)
    assert not (exp_with_model / "export").exists()


def test_export_takes_the_decoding_stages_scale_or_the_one_given(exp_with_model, tiny_corpus):
    exp = ExpDir(exp_with_model)
    assert _export(exp_with_model, tiny_corpus, "--acoustic-scale", "1.3") == 0
    manifest = json.loads((exp.export_dir / "manifest.json").read_text())
    assert manifest["acoustic_scale"] == 1.3
    exp.decode_dir("avg-1-1.pt").write_scale_choice({"best": 2.0, "tune_set": "dev"})
    assert _export(exp_with_model, tiny_corpus) == 0
    assert json.loads((exp.export_dir / "manifest.json").read_text())["acoustic_scale"] == 2.0
    # another --avg has no decoding of its own: refused, not silently 1.0
    (exp_with_model / "epoch-2.pt").write_bytes((exp_with_model / "epoch-1.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="avg-2-2.pt"):
        _export(exp_with_model, tiny_corpus, "--avg", "2")
    assert _export(exp_with_model, tiny_corpus, "--avg", "2", "--no-graph") == 0
    assert json.loads((exp.export_dir / "manifest.json").read_text())["acoustic_scale"] is None
