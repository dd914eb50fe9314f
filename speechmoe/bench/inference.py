"""Benchmark: inference speed of two systems in torch and in onnxruntime, against the limit.

    python -m speechmoe.bench.inference [CONFIG_A CONFIG_B] [--seconds 10] [--threads 1]

Default systems: the paper-scale B1 and MoE-8e (egs/aishell2/conf/model/). Each is run on
one utterance of --seconds of audio (random input: the cost depends on the routing only,
which a random input spreads over the experts), in torch (eager, inference mode) and in
onnxruntime (the model exported by speechmoe.inference.export_onnx), --threads threads
each, and in onnxruntime with int8 weights (speechmoe.inference.quantize_onnx; ort-int8),
the runs of all six interleaved and the medians of --repeats compared.

The limit: the model's multiply-accumulates per second of audio (measured as
speechmoe-info does, only the routed expert counted) over the rate of a matrix product
at the model's own shapes (frames x d_model x ffn_dim, fp32, --threads threads) measured
in the same run: the RTF this machine would reach if every MAC ran at that rate. Printed
per system and runtime: RTF and RTF / limit; the last line is
`moe_vs_b1_rtf_ratio=<MoE RTF / B1 RTF in the faster runtime of each>`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speechmoe.config import load_config
from speechmoe.inference import export_onnx, inference_module, quantize_onnx
from speechmoe.info import FRAMES_PER_SECOND, measure_cost
from speechmoe.model import build_model
from speechmoe.utils import cpu_description

DEFAULT = ("egs/aishell2/conf/model/b1.yaml", "egs/aishell2/conf/model/moe_8e.yaml")


def gemm_rate(m: int, k: int, n: int, repeats: int = 20) -> float:
    """FLOP/s of an (m x k) @ (k x n) fp32 product on the current torch threads."""

    a, b = torch.randn(m, k), torch.randn(k, n)
    times = []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        a @ b
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 2 * m * k * n / statistics.median(times)


def run(configs, seconds: float = 10.0, threads: int = 1, repeats: int = 10,
        num_classes: int = 1585, onnx: bool = True, int8: bool = True) -> list[dict]:


    torch.set_num_threads(threads)
    frames = round(seconds * FRAMES_PER_SECOND)
    systems = []
    tmp = tempfile.TemporaryDirectory(prefix="speechmoe-bench-")
    for path in configs:
        cfg = load_config(path, overrides={"model": {"num_classes": num_classes}})
        torch.manual_seed(0)
        model = build_model(cfg.model).eval()
        x = torch.randn(1, frames, cfg.model.input_dim)
        lengths = torch.tensor([frames])
        module = inference_module(model)
        runners = {"torch": lambda m=module, x=x, n=lengths: m(x, n)}
        if onnx:
            import onnxruntime as ort

            onnx_path = export_onnx(model, Path(tmp.name) / f"{cfg.name}.onnx",
                                    cfg.model.input_dim)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(onnx_path), opts,
                                        providers=["CPUExecutionProvider"])
            feed = {"features": x.numpy(), "lengths": lengths.numpy().astype(np.int64)}
            runners["onnxruntime"] = lambda s=sess, f=feed: s.run(None, f)
            if int8:
                q_path = quantize_onnx(onnx_path, onnx_path.with_suffix(".int8.onnx"))
                q_sess = ort.InferenceSession(str(q_path), opts,
                                              providers=["CPUExecutionProvider"])
                runners["ort-int8"] = lambda s=q_sess, f=feed: s.run(None, f)
        macs = measure_cost(model)["macs_per_second"]
        rate = gemm_rate(frames, cfg.model.d_model, cfg.model.ffn_dim)
        systems.append({"name": cfg.name, "runners": runners, "macs": macs, "rate": rate,
                        "times": {k: [] for k in runners}})
    with torch.inference_mode():
        for i in range(repeats + 2):
            for s in systems:
                for name, fn in s["runners"].items():
                    t0 = time.perf_counter()
                    fn()
                    if i >= 2:
                        s["times"][name].append(time.perf_counter() - t0)
    tmp.cleanup()
    out = []
    for s in systems:
        limit = 2 * s["macs"] / s["rate"]  # seconds of compute per second of audio
        rtf = {k: statistics.median(v) / seconds for k, v in s["times"].items()}
        out.append({"system": s["name"], "macs_per_second": s["macs"],
                    "gemm_gflops": s["rate"] / 1e9, "limit_rtf": limit, "rtf": rtf,
                    "vs_limit": {k: v / limit for k, v in rtf.items()}})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="*", default=list(DEFAULT))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--no-int8", action="store_true",
                   help="leave out onnxruntime with int8 weights (ort-int8)")
    args = p.parse_args(argv)
    if len(args.configs) != 2:
        p.error("give two configs (B1 first)")

    rows = run(args.configs, args.seconds, args.threads, args.repeats, onnx=not args.no_onnx,
               int8=not args.no_int8)
    print(f"torch {torch.__version__}, {cpu_description()}, fp32, {args.threads} thread(s), "
          "one utterance of "
          f"{args.seconds:.0f} s, median of {args.repeats} interleaved runs")
    print(f"{'system':<10} {'GMAC/s':>7} {'GEMM GFLOP/s':>13} {'limit RTF':>10} "
          f"{'runtime':<12} {'RTF':>7} {'x limit':>8}")
    for r in rows:
        for k, v in r["rtf"].items():
            print(f"{r['system']:<10} {r['macs_per_second'] / 1e9:7.2f} "
                  f"{r['gemm_gflops']:13.1f} {r['limit_rtf']:10.4f} {k:<12} {v:7.4f} "
                  f"{r['vs_limit'][k]:8.2f}")
    if "ort-int8" in rows[0]["rtf"]:
        print("(ort-int8: int8 weights; its 'x limit' is against the fp32 GEMM rate)")
    best = [min(r["rtf"].values()) for r in rows]
    print(f"moe_vs_b1_rtf_ratio={best[1] / best[0]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
