"""Packaging: a light import, the benchmark's output contract."""

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules,forbidden", [
    # `import speechmoe` and the config / info tools stay light: not even torch
    ("speechmoe, speechmoe.config, speechmoe.info",
     ("torch", "lhotse", "kaldifeat", "kaldifst", "k2")),
    # the model needs torch, but no optional speech package
    ("speechmoe.model, speechmoe.losses, speechmoe.features",
     ("lhotse", "kaldifeat", "kaldifst", "kaldi_decoder", "k2")),
    # graphs and decoders import their FST packages (and torch) only when used
    ("speechmoe.lang.graph, speechmoe.decode.wfst, speechmoe.decode.greedy",
     ("torch", "kaldifst", "kaldi_decoder", "kaldilm")),
    # the sherpa-onnx export needs torch, but imports the onnx packages only when used
    ("speechmoe.sherpa",
     ("onnx", "onnxruntime", "onnxscript", "sherpa_onnx", "kaldifeat", "lhotse")),
])
def test_imports_pull_in_no_heavy_dependency(modules, forbidden):
    code = (f"import sys, {modules}; "
            f"print([m for m in {forbidden!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_benchmark_prints_its_ratio_last():
    out = subprocess.run(
        [sys.executable, "-m", "speechmoe.bench.moe_layer", "--frames", "256", "--d-model",
         "32", "--hidden", "64", "--repeats", "2", "--experts", "4"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()
    key, value = out[-1].split("=")
    assert key == "moe_vs_dense_ratio" and float(value) > 0


def test_train_step_benchmark_prints_its_ratio_last(tmp_path):
    """Every column of both systems on both paths filled, the paths' losses equal in fp32,
    the speed-up and the ratios last."""
    out = subprocess.run(
        [sys.executable, "-m", "speechmoe.bench.train_step", *map(str, tiny_configs(tmp_path)),
         "--batch-seconds", "3", "--utterances", "2", "--repeats", "1", "--loss-steps", "2",
         "--threads", "1"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()
    rows = {tuple(line.split()[:2]): line.split() for line in out[2:6]}
    assert set(rows) == {(s, p) for s in ("b1", "moe") for p in ("baseline", "new")}
    assert all(len(r) == 11 and r[2] == "none" for r in rows.values())
    assert all(0 < float(r[-1].rstrip("%")) for r in rows.values())
    assert all(0 < float(r[5]) < float(r[4]) for r in rows.values())  # update < step
    losses = [line for line in out if line.startswith("losses of")]
    assert len(losses) == 2 and all("over 2 steps" in line for line in losses)
    assert out[-3].startswith("speedup_vs_baseline=")
    speedups = dict(x.split(":") for x in out[-3].split("=")[1].split(","))
    assert set(speedups) == {"b1", "moe"} and all(float(v) > 0 for v in speedups.values())
    assert out[-2].split("=")[0] == "forward_backward_ratio" and float(out[-2].split("=")[1]) > 0
    key, value = out[-1].split("=")
    assert key == "step_time_ratio" and float(value) > 0


def test_the_benchmarks_two_paths_train_alike(tmp_path):
    """The baseline path (revision 6f02136's step) and the new one (malloc tuning, the
    channels-last memory kernel, fused AdamW, foreach clipping, batched routing
    statistics, the CTC on each utterance's own columns, read from the logits) give the
    same losses over 20 steps of a tiny routed model, in fp32."""
    import torch

    from speechmoe.bench.train_step import System

    torch.set_num_threads(1)
    moe = tiny_configs(tmp_path)[1]
    paths = [System(str(moe), torch.device("cpu"), "none", 3.0, 2, 50, path=p)
             for p in ("baseline", "new")]
    for p in paths:
        with torch.no_grad():  # memory filters away from their zero start, so they count
            for m in p.model.modules():
                if hasattr(m, "lookback"):
                    m.lookback.normal_(generator=torch.Generator().manual_seed(1))
    base, new = ([float(p.step()) for _ in range(20)] for p in paths)
    assert base[-1] < base[0]  # it trains
    assert new == pytest.approx(base, rel=1e-4)


@pytest.mark.parametrize("path", ["only:malloc", "only:channels_last", "only:fused_update",
                                  "only:ctc_from_logits", "only:batched_routing",
                                  "without:channels_last", "without:ctc_from_logits",
                                  "without:batched_routing"])
def test_each_switch_of_the_ablation_trains_like_the_baseline(tmp_path, path):
    """bench.train_step --ablate: every change of the new path alone, and the new path
    without it, give the baseline's losses over 10 steps in fp32 (each switch changes how
    the step is computed, not what)."""
    import torch

    from speechmoe.bench.train_step import SWITCHES, System, path_switches

    assert path_switches("new") == set(SWITCHES) and path_switches("baseline") == set()
    assert path_switches(path) == ({path[5:]} if path.startswith("only:")
                                   else set(SWITCHES) - {path[8:]})
    torch.set_num_threads(1)
    moe = tiny_configs(tmp_path)[1]
    systems = [System(str(moe), torch.device("cpu"), "none", 3.0, 2, 50, path=p)
               for p in ("baseline", path)]
    for p in systems:
        with torch.no_grad():
            for m in p.model.modules():
                if hasattr(m, "lookback"):
                    m.lookback.normal_(generator=torch.Generator().manual_seed(1))
    base, other = ([float(p.step()) for _ in range(10)] for p in systems)
    assert base[-1] < base[0]
    assert other == pytest.approx(base, rel=1e-4)
    with pytest.raises(ValueError, match="unknown path 'only:nothing'"):
        path_switches("only:nothing")


@pytest.mark.slow
def test_train_step_ablation_prints_every_switch(tmp_path):
    """--ablate: a row per system and switch, the ratios positive, the losses close."""
    out = subprocess.run(
        [sys.executable, "-m", "speechmoe.bench.train_step", *map(str, tiny_configs(tmp_path)),
         "--batch-seconds", "3", "--utterances", "2", "--repeats", "1", "--loss-steps", "2",
         "--threads", "1", "--ablate"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("ablation:"))
    table = [line.split() for line in out[start + 2:start + 12]]
    assert [(r[0], r[1]) for r in table] == [(s, k) for s in ("b1", "moe") for k in (
        "malloc", "channels_last", "fused_update", "ctc_from_logits", "batched_routing")]
    assert all(float(r[3]) > 0 and float(r[5]) > 0 for r in table)
    assert all(float(r[6]) < 1e-3 and float(r[8]) < 1e-3 for r in table)
    assert out[-1].startswith("step_time_ratio=")


def tiny_configs(tmp_path):
    """Two tiny systems (B1-like and 4 experts) as YAML files."""
    import yaml

    base = {"input_dim": 960, "d_model": 32, "ffn_dim": 64, "attention_ffn_dim": 64,
            "attention_heads": 2, "num_layers": 2, "attention_every": 2}
    b1 = {"name": "b1", "model": {**base, "num_layers": 4, "num_experts": 1,
                                  "embedding_layers": 0},
          "loss": {"balance": "none", "alpha": 0.0, "beta": 0.0, "gamma": 0.0}}
    moe = {"name": "moe", "model": {**base, "num_experts": 4, "embedding_layers": 2}}
    paths = []
    for cfg in (b1, moe):
        paths.append(tmp_path / f"{cfg['name']}.yaml")
        paths[-1].write_text(yaml.safe_dump(cfg))
    return paths


def test_inference_benchmark_prints_its_ratio_last(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "speechmoe.bench.inference", *map(str, tiny_configs(tmp_path)),
         "--seconds", "2", "--repeats", "2"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()
    rows = [line.split() for line in out[2:-2]]
    assert {(r[0], r[4]) for r in rows} == {(s, k) for s in ("b1", "moe")
                                            for k in ("torch", "onnxruntime", "ort-int8")}
    assert all(float(r[5]) > 0 and float(r[6]) > 0 for r in rows)
    key, value = out[-1].split("=")
    assert key == "moe_vs_b1_rtf_ratio" and float(value) > 0


def test_recipe_step_benchmark_times_real_batches(tiny_corpus):
    """speechmoe.bench.recipe_step on the tiny corpus: the step alone and with the loader
    (0 and 1 workers), each with its audio rate, after a line naming torch and the CPU."""
    import torch
    from helpers import ROOT

    from speechmoe.utils import cpu_description

    tiny = {"num_layers": 2, "embedding_layers": 1, "attention_every": 2, "d_model": 32,
            "ffn_dim": 64, "attention_ffn_dim": 64, "attention_heads": 2}
    c = tiny_corpus
    out = subprocess.run(
        [sys.executable, "-m", "speechmoe.bench.recipe_step", "--model-config",
         str(ROOT / "egs/synth_mandarin/conf/model/moe_4e.yaml"), "--train-cuts", str(c["cuts"]),
         "--dev-cuts", str(c["cuts"]), "--cmvn", str(c["cmvn"]), "--lang-dir", str(c["lang"]),
         "--max-duration", "6", "--steps", "2", "--amp", "none",
         "--model-overrides", json.dumps(tiny)],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert out[0] == f"torch {torch.__version__}, {cpu_description()}"  # where it was measured
    assert out[1].startswith("compute only") and "s of audio per s" in out[1]
    assert [line.split("(")[-1] for line in out[2:]] == ["num_workers 0)", "num_workers 1)"]
