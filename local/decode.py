#!/usr/bin/env python3
"""Decoding stage: CTC greedy and WFST (TLG) beam search of every test set.

    local/decode.py --exp-dir exp/moe_4e --lang-dir data/lang --cmvn data/fbank/cmvn.pt \
        --cuts-dir data/fbank --sets test_read test_chat --tune-set dev dev_spon

The model is the average of the last --avg epoch checkpoints up to --epoch
(0: the last). WFST decoding's acoustic scale is chosen on --tune-set among
--acoustic-scales (the test sets are never used for it): the scale with the fewest errors
over all the tuning sets together (speechmoe/decode/tuning.py). Hypotheses are written to
<exp-dir>/decode/<model>/<method>/<set>/hyp.txt ("utt_id<TAB>tokens"), where <method> is
ctc_greedy (token sequence) or wfst (word sequence), and the choice of scale to
<exp-dir>/decode/<model>/wfst/acoustic_scale.json (speechmoe/expdir.py); scoring is
local/score.py.

Memory stays bounded whatever the size of a set: the network's log-posteriors are
computed batch by batch (on the GPU when there is one, --device), decoded greedily at
once, and sent to the WFST worker processes as they come, each utterance once (a worker
decodes it at every acoustic scale being tuned), with at most --max-pending utterances
waiting for a worker.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

import torch
from lhotse import CutSet

from speechmoe.checkpoint import checkpoint_for_decoding, source_fingerprint
from speechmoe.data.dataset import cut_words
from speechmoe.decode.greedy import ctc_greedy
from speechmoe.decode.posteriors import posteriors
from speechmoe.decode.tuning import DEFAULT_SCALES_TEXT, choose_scale, decode_at_scales, \
    parse_scales
from speechmoe.decode.wfst import WfstDecoder
from speechmoe.expdir import DecodeDir, ExpDir
from speechmoe.features import FeatureConfig, GlobalCMVN
from speechmoe.inference import load_model_for_inference
from speechmoe.lang.symbols import read_tokens, read_words
from speechmoe.lang.tokenizer import read_lang_info
from speechmoe.logs import cli_main, script_parser, setup_logger
from speechmoe.utils import atomic_write_text, resolve_device

METHODS = ("ctc_greedy", "wfst")


def get_parser() -> argparse.ArgumentParser:
    p = script_parser(__doc__, show_defaults=True)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--lang-dir", type=Path, required=True)
    p.add_argument("--cmvn", type=Path, required=True)
    p.add_argument("--cuts-dir", type=Path, required=True,
                   help="dir with cuts_<set>.jsonl.gz (with features)")
    p.add_argument("--sets", nargs="+", required=True)
    p.add_argument("--tune-set", "--tune-sets", dest="tune_sets", nargs="+", default=["dev"],
                   help="sets the acoustic scale is chosen on (errors pooled over them)")
    p.add_argument("--epoch", type=int, default=0, help="last epoch to use (0: the last)")
    p.add_argument("--avg", type=int, default=3, help="number of epoch checkpoints averaged")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--acoustic-scales", default=DEFAULT_SCALES_TEXT,
                   help="comma-separated candidates tuned on --tune-set")
    p.add_argument("--blank-skip-threshold", type=float, default=0.99,
                   help="collapse runs of frames with p(blank) above this (0: off)")
    p.add_argument("--max-duration", type=float, default=300.0)
    p.add_argument("--num-jobs", type=int, default=2, help="WFST decoding processes")
    p.add_argument("--max-pending", type=int, default=64,
                   help="utterances' posteriors waiting for a WFST worker at most")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    p.add_argument("--force", action="store_true", help="decode again even if done")
    return p


# One WfstDecoder per worker process, built once by the pool's initializer (the graph
# is loaded once per process, not once per utterance).
_WORKER_DECODER: Optional[WfstDecoder] = None


def _init_worker(graph: str, words: str, beam: float, max_active: int, skip) -> None:
    global _WORKER_DECODER
    torch.set_num_threads(1)
    _WORKER_DECODER = WfstDecoder(graph, words, beam=beam, max_active=max_active,
                                  blank_skip_threshold=skip)


def _decode_in_worker(log_probs, scales: list[float]) -> list[list[str]]:
    return decode_at_scales(_WORKER_DECODER, log_probs, scales)


def write_hyps(path: Path, hyps: dict[str, list[str]]) -> None:
    atomic_write_text(path, "".join(f"{u}\t{' '.join(h)}\n"
                                    for u, h in sorted(hyps.items())))


def decoding_inputs(args) -> dict:
    """What the hypotheses depend on besides the model: the graph and the options."""
    graph = args.lang_dir / "TLG.fst"
    return {"graph": source_fingerprint(graph) if graph.is_file() else None,
            "sets": args.sets, "tune_sets": args.tune_sets, "methods": args.methods,
            "beam": args.beam, "max_active": args.max_active,
            "acoustic_scales": args.acoustic_scales}


def already_decoded(ddir: DecodeDir, inputs: dict, log) -> bool:
    """True when ddir was decoded with the same inputs (its .done records them)."""
    if not ddir.done.is_file():
        return False
    try:
        same = json.loads(ddir.done.read_text() or "{}") == inputs
    except json.JSONDecodeError:
        same = False
    if not same:
        log.info("%s: the graph or the decoding options changed since it was decoded: "
                 "decoding again", ddir.root)
    return same


@dataclass
class SetResult:
    greedy: dict                       # utterance -> tokens
    wfst: dict                         # scale -> {utterance -> words}
    refs: dict                         # utterance -> reference words
    timing: dict = field(default_factory=dict)


class SetDecoder:
    """Decodes whole sets: the network batch by batch in this process, the WFST search
    in a pool of worker processes fed as the posteriors come."""

    def __init__(self, args, model, device, log):
        self.args, self.model, self.device, self.log = args, model, device, log
        self.cmvn = GlobalCMVN.load(args.cmvn)
        self.feature_config = FeatureConfig.for_cmvn(args.cmvn)
        self.id2tok = {i: t for t, i in read_tokens(args.lang_dir / "tokens.txt").items()}
        self.pool = None
        self.words: set[str] = set()
        self.open_vocabulary = read_lang_info(args.lang_dir).get("open_vocabulary", "off")
        if "wfst" in args.methods:
            self.words = set(read_words(args.lang_dir / "words.txt"))
            graph = args.lang_dir / "TLG.fst"
            if not graph.is_file():
                raise FileNotFoundError(f"{graph}: not found (run the lang stage first)")
            self.pool = get_context("fork").Pool(
                args.num_jobs, initializer=_init_worker,
                initargs=(str(graph), str(args.lang_dir / "words.txt"), args.beam,
                          args.max_active, args.blank_skip_threshold or None))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()

    def load_cuts(self, name: str) -> CutSet:
        path = self.args.cuts_dir / f"cuts_{name}.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the feature stage first)")
        return CutSet.from_file(path).to_eager()

    def decode(self, name: str, scales: list[float]) -> SetResult:
        """Greedy and WFST (at each of scales) hypotheses of one set, streamed."""
        args = self.args
        cuts = self.load_cuts(name)
        t0 = time.time()
        result = SetResult(greedy={}, wfst={s: {} for s in scales} if self.pool else {},
                           refs={c.id: cut_words(c) for c in cuts})
        pending: collections.deque = collections.deque()

        def collect(until: int) -> None:
            """Take finished searches in order; wait while more than ``until`` remain."""
            while pending and (len(pending) > until or pending[0][1].ready()):
                cut_id, job = pending.popleft()
                for scale, words in zip(scales, job.get()):
                    result.wfst[scale][cut_id] = words

        t_nn, t_batch = 0.0, time.time()
        for cut_id, lp in posteriors(self.model, cuts, self.cmvn, args.max_duration,
                                     self.device, self.feature_config):
            t_nn += time.time() - t_batch
            if "ctc_greedy" in args.methods:
                result.greedy[cut_id] = [self.id2tok[t] for t in ctc_greedy(lp)[0]]
            if self.pool is not None:
                pending.append((cut_id, self.pool.apply_async(_decode_in_worker,
                                                              (lp, scales))))
                collect(until=args.max_pending)  # bounded: wait for the oldest
            t_batch = time.time()
        collect(until=0)
        if self.pool is not None:
            self.report_unknown_words(name, result.refs)
        audio = sum(c.duration for c in cuts)
        workers = args.num_jobs if self.pool is not None else 0
        self.log.info("%s: %d utterances, %.0f s of audio: network %.1f s (RTF %.3f), all "
                      "decoding %.1f s (%d WFST processes, %d acoustic scales)", name,
                      len(cuts), audio, t_nn, t_nn / max(audio, 1e-9), time.time() - t0,
                      workers, len(scales))
        result.timing = {"utterances": len(cuts), "audio_seconds": round(audio, 2),
                         "network_seconds": round(t_nn, 2),
                         "decoding_seconds": round(time.time() - t0, 2),
                         "wfst_processes": workers, "acoustic_scales": len(scales)}
        return result

    def report_unknown_words(self, name: str, refs: dict[str, list[str]]) -> None:
        """Say how many of a set's reference words the lexicon lacks, and what the WFST
        can do about them (nothing with a closed vocabulary)."""
        running = [w for ws in refs.values() for w in ws]
        unknown = [w for w in running if w not in self.words]
        if not unknown:
            return
        distinct = set(running)
        how = ("the WFST can never output them (open_vocabulary off)"
               if self.open_vocabulary == "off" else
               "the WFST can output them only through the open vocabulary (spelled from "
               "characters or BPE pieces)")
        self.log.warning("%s: %d of its %d distinct reference words (%.1f%%; %d of %d running "
                         "words) are not in the lexicon (%s): %s", name,
                         len(set(unknown)), len(distinct), 100 * len(set(unknown)) /
                         len(distinct), len(unknown), len(running),
                         self.args.lang_dir / "words.txt", how)


def tune_scale(decoder: SetDecoder, args, ddir: DecodeDir, scales: list[float], log,
               timing: dict) -> tuple[float, dict[str, SetResult]]:
    """Decode the tuning sets at every candidate, choose, and record the choice; (the
    scale, each tuning set's decoding)."""
    metric = read_lang_info(args.lang_dir)["metric"]  # CER, or WER for a BPE lang dir
    refs, hyps, results = {}, {}, {}
    for name in dict.fromkeys(args.tune_sets):
        tuned = results[name] = decoder.decode(name, scales)
        timing[name] = tuned.timing
        refs[name], hyps[name] = tuned.refs, tuned.wfst
    choice = choose_scale(refs, hyps, metric)
    for name, stats in choice.per_set.items():
        log.info("acoustic scale on %s: %s %s", name, metric,
                 {s: round(st.rate, 2) for s, st in stats.items()})
    log.info("acoustic scale on %s: %s %s -> %.2f", " + ".join(choice.per_set), metric,
             {s: round(st.rate, 2) for s, st in choice.pooled.items()}, choice.best)
    ddir.write_scale_choice(choice.to_json())
    return choice.best, results


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    scales = parse_scales(args.acoustic_scales)
    exp = ExpDir(args.exp_dir)
    log = setup_logger(exp.log_file("decode"))
    torch.set_num_threads(2)
    device = resolve_device(args.device)
    ckpt = checkpoint_for_decoding(args.exp_dir, args.epoch, args.avg)
    ddir = exp.decode_dir(ckpt)
    inputs = decoding_inputs(args)
    if not args.force and already_decoded(ddir, inputs, log):
        log.info("%s: already decoded, skipping: the decoding of %s, whose done marker %s "
                 "records the same graph and options; --force decodes again (run.sh: --force "
                 "true)", ddir.root, ckpt.name, ddir.done)
        return 0
    model, system = load_model_for_inference(ckpt)
    model.to(device)
    log.info("decoding with %s (%s) on %s -> %s", ckpt, system.name, device, ddir.root)

    decoder = SetDecoder(args, model, device, log)
    timing: dict = {}
    best, tuned = scales[0], {}
    if decoder.pool is not None and len(scales) > 1:
        best, tuned = tune_scale(decoder, args, ddir, scales, log, timing)
    for name in args.sets:
        if name in tuned:  # decoded at every scale already: its result at the chosen one
            log.warning("%s is also a tuning set: its acoustic scale was chosen on it, so its "
                        "WFST score is optimistic (a corpus with train and dev only: hold out "
                        "a test set, docs/adding-a-corpus.md)", name)
            result = tuned[name]
        else:
            result = decoder.decode(name, [best])
            timing[name] = result.timing
        if "ctc_greedy" in args.methods:
            write_hyps(ddir.hyps("ctc_greedy", name), result.greedy)
        if decoder.pool is not None:
            write_hyps(ddir.hyps("wfst", name), result.wfst[best])
    decoder.close()
    # wall times per set (network: the model's share, on this process's threads)
    ddir.timing.write_text(json.dumps(timing, indent=1) + "\n")
    ddir.done.write_text(json.dumps(inputs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
