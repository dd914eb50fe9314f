"""Benchmark: augmentation on the fly (in the data loader) against stored augmented copies.

    python -m speechmoe.bench.augment --cuts egs/synth_mandarin/data/manifests/cuts_train_aug.jsonl.gz \
        --features egs/synth_mandarin/data/fbank/cuts_train_aug.jsonl.gz \
        --cmvn egs/synth_mandarin/data/fbank/cmvn.pt --lang-dir egs/synth_mandarin/data/lang \
        --model-config egs/synth_mandarin/conf/model/moe_4e.yaml [--steps 12]

Both arms train the same model for --steps steps on the same batches (--batch-seconds of
the augmented copy; its cuts draw speed, RIR and noise as the recipe's stage 1 made them),
with one DataLoader worker and the training on --threads threads, as the recipe trains:

    stored      the worker reads the stored features (what the recipe does);
    on-the-fly  the worker renders each cut's audio (lhotse: speed resampling, RIR
                convolution, noise mix; the WSOLA stretch of each tempo cut, run on its
                stored audio) and computes fbank (+ pitch) itself.

The arms alternate in blocks of --block steps, so machine noise hits both alike. Printed:
the median wall time per step of each, the worker's own time per batch measured alone,
and `on_the_fly_vs_stored=<ratio>`: what on-the-fly augmentation would cost each epoch.
The one-off cost of the stored copy is the feature stage's time for it (its log).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from speechmoe.config import load_config
from speechmoe.data.dataset import AsrDataset
from speechmoe.data.tempo import wsola
from speechmoe.features import FeatureConfig, GlobalCMVN, base_features
from speechmoe.lang.tokenizer import LexiconTokenizer
from speechmoe.losses import speechmoe_loss
from speechmoe.model import build_model
from speechmoe.utils import cpu_description


def _tempo_factor(cut):
    """The tempo factor of a cut of the augmented copy (its stored FLAC's recording id
    ends in _tp<factor>; 1.2, the default's mean stretch, for ids written before the
    factor was in them: the cost hardly depends on it), or None."""
    import re

    tracks = [t.cut for t in cut.tracks] if hasattr(cut, "tracks") else [cut]
    for t in tracks:
        rec = getattr(t, "recording", None)
        m = re.search(r"_tp(\d+(?:\.\d+)?)?(?:_rvb)?$", rec.id) if rec is not None else None
        if m:
            return float(m.group(1)) if m.group(1) else 1.2
    return None


class _OnTheFly:
    """Dataset wrapper: features computed from the cuts' (augmented) audio."""

    def __init__(self, dataset, cfg):
        self.dataset, self.cfg = dataset, cfg

    def __getitem__(self, cuts):
        class _Cut:  # what AsrDataset needs of a cut, with computed features
            def __init__(self, cut, feats):
                self._cut, self._feats = cut, feats

            def __getattr__(self, name):
                return getattr(self._cut, name)

            def load_features(self):
                return self._feats

        rendered = []
        with torch.no_grad():
            for c in cuts:
                audio = c.load_audio()[0]
                factor = _tempo_factor(c)
                if factor is not None:  # the stretch itself (of the stored, stretched audio:
                    wsola(audio, factor, c.sampling_rate)  # the same work as of its source)
                rendered.append(_Cut(c, base_features(audio, c.sampling_rate, self.cfg).numpy()))

        class _Cuts(list):
            def sort_by_duration(self, ascending=False):
                return _Cuts(sorted(self, key=lambda c: c.duration, reverse=not ascending))

        return self.dataset[_Cuts(rendered)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--cuts", required=True, help="the augmented copy's manifest (no features)")
    p.add_argument("--features", required=True, help="the same cuts with stored features")
    p.add_argument("--cmvn", required=True)
    p.add_argument("--lang-dir", required=True)
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-seconds", type=float, default=120.0)
    p.add_argument("--steps", type=int, default=12, help="steps per arm")
    p.add_argument("--block", type=int, default=3, help="steps per arm before switching")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from lhotse import CutSet


    torch.set_num_threads(args.threads)
    cfg = FeatureConfig.for_cmvn(args.cmvn)
    tok = LexiconTokenizer(args.lang_dir)
    system = load_config(args.model_config, overrides={"model": {
        "num_classes": tok.vocab_size, "input_dim": cfg.model_dim}})
    model = build_model(system.model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    raw = CutSet.from_file(args.cuts).to_eager()
    stored = {c.id: c for c in CutSet.from_file(args.features)}
    batches, cur, total = [], [], 0.0
    for c in raw:
        if c.id not in stored:
            continue
        cur.append(c.id)
        total += c.duration
        if total >= args.batch_seconds:
            batches.append(cur)
            cur, total = [], 0.0
        if len(batches) == args.steps:
            break
    if len(batches) < args.steps:
        raise ValueError(f"{args.cuts}: only {len(batches)} batches of {args.batch_seconds} s")
    dataset = AsrDataset(GlobalCMVN.load(args.cmvn), tok, cfg)
    arms = {
        "stored": (dataset, [CutSet.from_cuts([stored[i] for i in b]) for b in batches]),
        "on-the-fly": (_OnTheFly(dataset, cfg),
                       [[raw[i] for i in b] for b in batches]),
    }

    def loader(name, idx):
        ds, items = arms[name]
        return torch.utils.data.DataLoader([items[i] for i in idx], batch_size=None,
                                           num_workers=1, collate_fn=ds.__getitem__)

    def step(batch):
        out = model(batch["features"], batch["lengths"])
        loss, _ = speechmoe_loss(out, batch["targets"], batch["target_lengths"], system.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()

    # the worker's time alone, per batch, for both arms
    alone = {}
    for name, (ds, items) in arms.items():
        t0 = time.perf_counter()
        for it in items[:3]:
            ds[it]
        alone[name] = (time.perf_counter() - t0) / 3
    step(dataset[arms["stored"][1][0]])  # warm-up
    times = {name: [] for name in arms}
    order = list(range(args.steps))
    for start in range(0, args.steps, args.block):
        idx = order[start:start + args.block]
        for name in arms:
            t0 = time.perf_counter()
            for batch in loader(name, idx):
                step(batch)
            times[name].append((time.perf_counter() - t0) / len(idx))
    hours = sum(sum(raw[i].duration for i in b) for b in batches) / len(batches)
    print(f"{cpu_description()}; batches of {hours:.0f} s of audio, {args.steps} steps per "
          f"arm, {args.threads} "
          f"training threads, 1 loader worker; features {cfg.stored_dim} dims "
          f"(pitch={cfg.pitch})")
    for name in arms:
        print(f"{name:>11}: {statistics.median(times[name]):.3f} s per step (median of "
              f"{len(times[name])} blocks); the worker alone {alone[name]:.3f} s per batch")
    ratio = statistics.median(times["on-the-fly"]) / statistics.median(times["stored"])
    print(f"on_the_fly_vs_stored={ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
