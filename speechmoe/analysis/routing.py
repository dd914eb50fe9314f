"""What the routers follow: experts against speakers and against the tokens frames say.

    python -m speechmoe.analysis.routing --model exp/moe_8e/avg-4.pt \
        --cuts data/fbank/cuts_dev_unseen.jsonl.gz --lang-dir data/lang \
        --cmvn data/fbank/cmvn.pt --out exp/moe_8e/routing_dev_unseen

For every frame of a set, each MoE layer's top-1 expert is counted against the frame's
speaker (its cut's supervision) and against the token the frame is aligned to (a CTC
Viterbi alignment of the model's own log-probs to the transcript: blank or a unit). From
those joint counts, per layer (`routing.json`, `routing.png`):

  - the expert shares (what fairseq's and DeepSpeed's MoE users watch for imbalance);
  - the distribution over experts of each speaker and of each token class: blank, each
    tone (1-5), each initial and each final of the toned syllables (zero initial "-");
  - the normalised mutual information of the expert with the speaker and with the
    aligned token, tone, initial and final.

NMI(X; Y) = I(X; Y) / ((H(X) + H(Y)) / 2), the arithmetic normalisation (scikit-learn's
default): 1 when each determines the other, 0 when they are independent. Routing that
sends each speaker to an expert of its own has speaker NMI 1 whatever the tokens; routing
by phone class has token NMI well above speaker NMI. An NMI over no frames, or between two
variables of one value each, is undefined and raises.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

# Pinyin initials, longest first so that "zh" wins over "z".
INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q",
            "x", "r", "z", "c", "s", "y", "w")
LABELINGS = ("token", "tone", "initial", "final")


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of the distribution the counts make."""
    p = np.asarray(counts, dtype=np.float64).reshape(-1)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def nmi(joint: np.ndarray) -> float:
    """Normalised mutual information of the two variables of a joint count table
    (rows: one variable's values, columns: the other's)."""
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    if total <= 0:
        raise ValueError("NMI over no frames is undefined")
    hx, hy, hxy = entropy(joint.sum(axis=1)), entropy(joint.sum(axis=0)), entropy(joint)
    if hx + hy == 0:
        raise ValueError("NMI of two variables with one value each is undefined")
    mi = max(hx + hy - hxy, 0.0)
    return min(1.0, 2.0 * mi / (hx + hy))


def syllable_parts(unit: str) -> Optional[tuple[str, str, str]]:
    """(initial, final, tone) of a toned pinyin syllable ("zhuang1" -> zh, uang, 1; "an4" ->
    -, an, 4); None for anything else (English phones, special symbols)."""
    if len(unit) < 2 or not unit[-1].isdigit() or not unit[:-1].isalpha() \
            or not unit[:-1].islower():
        return None
    base, tone = unit[:-1], unit[-1]
    for ini in INITIALS:
        if base.startswith(ini) and len(base) > len(ini):
            return ini, base[len(ini):], tone
    return "-", base, tone


def token_classes(units: Sequence[str], blank: int = 0) -> dict[str, list[str]]:
    """Per labeling, the class of every token id: token (the unit itself), tone, initial,
    final; the blank is "<blank>" in all, a unit that is not a syllable "other"."""
    out: dict[str, list[str]] = {name: [] for name in LABELINGS}
    for i, unit in enumerate(units):
        parts = syllable_parts(unit)
        out["token"].append("<blank>" if i == blank else unit)
        for name, k in (("initial", 0), ("final", 1), ("tone", 2)):
            out[name].append("<blank>" if i == blank else (parts[k] if parts else "other"))
    return out


def ctc_align(log_probs: np.ndarray, targets: Sequence[int], blank: int = 0) -> np.ndarray:
    """The token id each frame says on the best CTC path through `targets` (Viterbi over
    the blank-interleaved labels): (T,) ints, the blank where the path is in a blank.
    log_probs: (T, C). Raises when T frames cannot hold the targets."""
    lp = np.asarray(log_probs, dtype=np.float64)
    T = lp.shape[0]
    ext = [blank]
    for t in targets:
        ext += [int(t), blank]
    S = len(ext)
    ext = np.array(ext)
    # a label may be skipped over its blank when it differs from the label two back
    skip = np.zeros(S, dtype=bool)
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    score = np.full(S, -np.inf)
    score[0] = lp[0, ext[0]]
    if S > 1:
        score[1] = lp[0, ext[1]]
    back = np.zeros((T, S), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, T):
        cand = np.stack([score,
                         np.concatenate([[-np.inf], score[:-1]]),
                         np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]),
                                  -np.inf)])
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + lp[t, ext]
    ends = [S - 1] + ([S - 2] if S > 1 else [])
    s = max(ends, key=lambda k: score[k])
    if not np.isfinite(score[s]):
        raise ValueError(f"{len(targets)} labels cannot be aligned to {T} frames")
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = ext[s]
        s -= int(back[t, s])
    return path


@dataclass
class RoutingCounts:
    """Joint counts per MoE layer: expert x speaker and expert x token id."""

    num_experts: int
    num_tokens: int
    speakers: list[str] = field(default_factory=list)
    by_speaker: list[np.ndarray] = field(default_factory=list)  # per layer (n, speakers)
    by_token: list[np.ndarray] = field(default_factory=list)  # per layer (n, tokens)

    def add(self, experts: np.ndarray, speaker: str, tokens: Optional[np.ndarray]) -> None:
        """One utterance: experts (layers, T) of its real frames, its speaker, and the
        token id of each frame (None: not aligned)."""
        experts = np.asarray(experts)
        if not self.by_speaker:
            self.by_speaker = [np.zeros((self.num_experts, 0), np.int64)] * len(experts)
            self.by_token = [np.zeros((self.num_experts, self.num_tokens), np.int64)
                             for _ in experts]
        if speaker not in self.speakers:
            self.speakers.append(speaker)
            self.by_speaker = [np.pad(m, ((0, 0), (0, 1))) for m in self.by_speaker]
        col = self.speakers.index(speaker)
        for layer, e in enumerate(experts):
            self.by_speaker[layer][:, col] += np.bincount(e, minlength=self.num_experts)
            if tokens is not None:
                np.add.at(self.by_token[layer], (e, tokens), 1)

    def by_class(self, layer: int, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Expert x class counts of one layer, the token columns merged by `classes`."""
        names = sorted(set(classes))
        merged = np.zeros((self.num_experts, len(names)), np.int64)
        for tok, cls in enumerate(classes):
            merged[:, names.index(cls)] += self.by_token[layer][:, tok]
        keep = merged.sum(axis=0) > 0
        return [n for n, k in zip(names, keep) if k], merged[:, keep]


def _distribution(table: np.ndarray, names: Sequence[str]) -> dict[str, list[float]]:
    """Per column: its frames' shares over the experts."""
    out = {}
    for j, name in enumerate(names):
        total = table[:, j].sum()
        if total:
            out[name] = [round(float(x) / total, 4) for x in table[:, j]]
    return out


def report(counts: RoutingCounts, units: Sequence[str], blank: int = 0) -> dict:
    """Per layer: expert shares, per-speaker and per-class expert distributions, NMIs."""
    classes = token_classes(units, blank)
    layers = []
    aligned = any(m.sum() for m in counts.by_token)
    for k, spk in enumerate(counts.by_speaker):
        frames = int(spk.sum())
        if frames == 0:
            raise ValueError("routing report over no frames")
        entry = {"layer": k, "frames": frames,
                 "expert_shares": [round(float(x) / frames, 4) for x in spk.sum(axis=1)],
                 "speaker_nmi": round(nmi(spk), 4),
                 "per_speaker": _distribution(spk, counts.speakers)}
        if aligned:
            entry["token_nmi"] = round(nmi(counts.by_token[k]), 4)
            for name in ("tone", "initial", "final"):
                names, table = counts.by_class(k, classes[name])
                entry[f"{name}_nmi"] = round(nmi(table), 4)
                entry[f"per_{name}"] = _distribution(table, names)
        layers.append(entry)
    return {"speakers": len(counts.speakers), "experts": counts.num_experts,
            "nmi": "I(X;Y) / ((H(X) + H(Y)) / 2)", "layers": layers}


def collect(model, cuts, cmvn, feature_config, tokenizer, max_duration: float = 200.0,
            align: bool = True, device=None) -> RoutingCounts:
    """Run the model over the cuts (eval mode, no gradient) and count its routing."""
    import torch

    from speechmoe.data.dataset import AsrDataset
    from speechmoe.data.sampling import make_sampler

    device = device or next(model.parameters()).device
    speaker_of = {c.id: (c.supervisions[0].speaker if c.supervisions else None) or "unknown"
                  for c in cuts}
    dataset = AsrDataset(cmvn, tokenizer=tokenizer if align else None,
                         feature_config=feature_config)
    counts: Optional[RoutingCounts] = None
    model.eval()
    with torch.no_grad():
        for batch_cuts in make_sampler(cuts, max_duration, num_buckets=5, shuffle=False):
            batch = dataset[batch_cuts]
            if not batch["cut_ids"]:
                continue
            out = model(batch["features"].to(device), batch["lengths"].to(device))
            if not out.routing:
                raise ValueError("the model has no MoE layer: nothing is routed")
            B, T = out.log_probs.shape[:2]
            experts = torch.stack([r.expert_index for r in out.routing]).view(-1, B, T).cpu()
            if counts is None:
                counts = RoutingCounts(out.routing[0].probs.shape[-1], out.log_probs.shape[-1])
            for b, cut_id in enumerate(batch["cut_ids"]):
                n = int(out.lengths[b])
                tokens = None
                if align:
                    m = int(batch["target_lengths"][b])
                    tokens = ctc_align(out.log_probs[b, :n].float().cpu().numpy(),
                                       batch["targets"][b, :m].tolist())
                counts.add(experts[:, b, :n].numpy(), speaker_of[cut_id], tokens)
    if counts is None:
        raise ValueError("no readable cut: nothing to analyse")
    return counts


def plot(rep: dict, path: Path) -> None:
    """NMI of the expert with speaker, token, tone, initial and final, per layer; and the
    last layer's expert distribution per tone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = rep["layers"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(layers))
    keys = [k for k in ("speaker_nmi", "token_nmi", "tone_nmi", "initial_nmi", "final_nmi")
            if k in layers[0]]
    for i, key in enumerate(keys):
        a.bar(x + (i - len(keys) / 2 + 0.5) * 0.8 / len(keys), [l[key] for l in layers],
              0.8 / len(keys), label=key.replace("_nmi", ""))
    a.set_xticks(x)
    a.set_xlabel("MoE layer")
    a.set_ylabel("NMI with the expert")
    a.set_title(f"What the routers follow ({rep['speakers']} speakers)")
    a.legend(fontsize=8)
    last = layers[-1]
    table = last.get("per_tone") or last["per_speaker"]
    names = list(table)[:40]
    b.imshow(np.array([table[n] for n in names]).T, aspect="auto", cmap="viridis",
             vmin=0, vmax=1)
    b.set_xticks(range(len(names)))
    b.set_xticklabels(names, rotation=90, fontsize=7)
    b.set_ylabel("expert")
    b.set_title(f"layer {last['layer']}: share of each {'tone' if 'per_tone' in last else 'speaker'}'s"
                " frames per expert")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, required=True,
                   help="a checkpoint or averaged model file (exp/<model>/avg-N.pt)")
    p.add_argument("--cuts", type=Path, required=True, help="a set's cuts with features")
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--cmvn", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="routing.json, routing.png here")
    p.add_argument("--max-duration", type=float, default=200.0)
    p.add_argument("--no-align", action="store_true",
                   help="speakers only (no CTC alignment, no token classes)")
    args = p.parse_args(argv)

    from lhotse import CutSet

    from speechmoe.features import FeatureConfig, GlobalCMVN
    from speechmoe.inference import load_model_for_inference
    from speechmoe.lang.symbols import is_disambig, read_tokens
    from speechmoe.lang.tokenizer import make_tokenizer

    for path in (args.model, args.cuts, args.cmvn):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found")
    model, _ = load_model_for_inference(args.model)
    tokenizer = make_tokenizer(args.lang_dir)
    cuts = CutSet.from_file(args.cuts)
    counts = collect(model, cuts, GlobalCMVN.load(args.cmvn), FeatureConfig.for_cmvn(args.cmvn),
                     tokenizer, args.max_duration, align=not args.no_align)
    ids = {i: t for t, i in read_tokens(args.lang_dir / "tokens.txt").items()
           if not is_disambig(t)}
    units = [ids[i] for i in range(len(ids))]
    rep = {"model": str(args.model), "cuts": str(args.cuts), **report(counts, units)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routing.json").write_text(json.dumps(rep, indent=1, ensure_ascii=False) + "\n")
    plot(rep, args.out / "routing.png")
    for layer in rep["layers"]:
        print(f"layer {layer['layer']:2d}: shares " + " ".join(
            f"{s:.2f}" for s in layer["expert_shares"]) + f"; NMI speaker {layer['speaker_nmi']:.3f}"
            + "".join(f", {k[:-4]} {layer[k]:.3f}" for k in
                      ("token_nmi", "tone_nmi", "initial_nmi", "final_nmi") if k in layer))
    print(f"{rep['speakers']} speakers, {rep['layers'][0]['frames']} frames: "
          f"{args.out / 'routing.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
