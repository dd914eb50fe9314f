"""speechmoe-info: parameters and inference cost of a system config.

    speechmoe-info egs/aishell2/conf/model/moe_4e.yaml [--json]
    speechmoe-info egs/aishell2/conf/model/*.yaml          # one table row per config

How the cost is counted (the paper's "FLOPs for a one-second example"):
- It is measured by running the model in inference mode under
  torch.utils.flop_counter.FlopCounterMode, not by a formula. Only the expert
  each frame is routed to runs, so only active experts are counted.
- The input is 3 s of stacked features (100 frames at 33.3 frames/s after
  stacking 8 frames and keeping every 3rd) and the count is divided by 3;
  attention's quadratic part is negligible at this length.
- A multiply-accumulate (MAC) is 2 FLOPs. The counter sees matrix products,
  convolutions and attention; element-wise ops, norms and softmax are not
  counted. The paper's "FLOPs" column behaves like MACs (2.3B ~ 71M params x
  33 frames), so compare it with `macs_per_second`.
- The embedding network's CTC head is used only for training (L_e) and is
  not run at inference; its parameters are counted in `params`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechmoe.config import ConfigError, load_config

FRAMES_PER_SECOND = 100 / 3  # 10 ms fbank frames, subsampled by 3


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_cost(model, seconds: float = 3.0, seed: int = 0) -> dict:
    """Run the model on `seconds` of random input and count its FLOPs per second of audio."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    frames = round(seconds * FRAMES_PER_SECOND)
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, frames, model.cfg.input_dim, generator=gen)
    lengths = torch.tensor([frames])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(feats, lengths)
    finally:
        model.train(was_training)
    flops = counter.get_total_flops() / seconds
    return {"flops_per_second": int(flops), "macs_per_second": int(flops / 2),
            "frames_per_second": FRAMES_PER_SECOND}


def describe(config_path: str | Path) -> dict:
    import torch  # here, not at the top: `speechmoe-info --help` and the config checks

    from speechmoe.model import build_model  # stay light (no torch) until a model is built

    cfg = load_config(config_path)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    info = {"config": str(config_path), "name": cfg.name, "params": count_params(model),
            "num_experts": cfg.model.num_experts, "num_layers": cfg.model.num_layers,
            "embedding_layers": cfg.model.embedding_layers}
    info.update(measure_cost(model))
    return info


def format_table(rows: list[dict]) -> str:
    header = f"{'system':<12} {'experts':>7} {'params':>10} {'MACs/s':>9} {'FLOPs/s':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['name']:<12} {r['num_experts']:>7} {r['params'] / 1e6:>9.1f}M "
                     f"{r['macs_per_second'] / 1e9:>8.2f}B {r['flops_per_second'] / 1e9:>8.2f}B")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="speechmoe-info",
        description="Print parameter count and per-second inference cost of system configs "
                    "(measured by running the model; only active experts count).")
    parser.add_argument("configs", nargs="+", help="model config YAML file(s)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON (an object for one config, a list for several)")
    args = parser.parse_args(argv)

    try:
        rows = [describe(c) for c in args.configs]
    except ConfigError as exc:
        print(f"speechmoe-info: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
    else:
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
