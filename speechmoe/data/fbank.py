"""Feature extraction stage: 40-dim fbank (+ pitch) for every cut, stored with lhotse, bad
audio reported.

The features are speechmoe.features.base_features: fbank (kaldifeat, or lhotse's
torch Fbank with identical options), with the 2 pitch features appended when the
config asks for them. Deltas, CMVN and frame stacking are applied on
the fly when batches are made (they are cheap and keep the storage small).
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from speechmoe.features import FeatureConfig, base_features

log = logging.getLogger("speechmoe")


def _extractor_class():
    """lhotse FeatureExtractor around speechmoe.features.base_features (lhotse imported
    lazily). Its config is the toolkit's FeatureConfig itself, every field of it, so what
    is stored is what training and decoding will assume."""
    from lhotse.features.base import FeatureExtractor, register_extractor

    @register_extractor
    class SpeechMoEFbank(FeatureExtractor):
        name = "speechmoe-fbank"
        config_type = FeatureConfig

        def extract(self, samples, sampling_rate: int) -> np.ndarray:
            samples = np.asarray(samples, dtype=np.float32)
            if samples.ndim == 2:
                samples = samples[0]
            return base_features(samples, sampling_rate, self.config).numpy()

        @property
        def frame_shift(self) -> float:
            return self.config.frame_shift_ms / 1000

        def feature_dim(self, sampling_rate: int) -> int:
            return self.config.stored_dim

    return SpeechMoEFbank


_EXTRACTOR = None


def extractor(config: Optional[FeatureConfig] = None):
    global _EXTRACTOR
    if _EXTRACTOR is None:
        _EXTRACTOR = _extractor_class()
    return _EXTRACTOR(config or FeatureConfig())


def check_audio(cut, expected_rate: int) -> Optional[str]:
    """Why a cut's audio cannot be used, or None if it is fine."""
    if cut.sampling_rate != expected_rate:
        return f"sampled at {cut.sampling_rate} Hz, expected {expected_rate} Hz"
    if cut.duration <= 0 or cut.num_samples == 0:
        return "empty (zero length)"
    return None


def _source(cut) -> str:
    """The audio file behind a cut, for error messages."""
    try:
        rec = cut.recording if hasattr(cut, "recording") and cut.recording is not None \
            else cut.tracks[0].cut.recording
        return str(rec.sources[0].source)
    except Exception:
        return "<unknown source>"


def _work(args) -> tuple[list, list[tuple[str, str, str]]]:
    cuts, storage_path, config = args
    import torch
    from lhotse import LilcomChunkyWriter

    torch.set_num_threads(1)
    ext = extractor(config)
    done, bad = [], []
    with LilcomChunkyWriter(storage_path) as writer:
        for cut in cuts:
            reason = check_audio(cut, config.sample_rate)
            if reason is None:
                try:
                    done.append(cut.compute_and_store_features(ext, writer, mix_eagerly=True))
                    continue
                except Exception as exc:  # corrupt file, unreadable header, bad transform
                    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}" \
                        if str(exc).strip() else type(exc).__name__
            bad.append((cut.id, _source(cut), reason))
    return done, bad


def compute_fbank(cuts, out_dir: Path, name: str, num_jobs: int = 2,
                  config: Optional[FeatureConfig] = None):
    """Compute and store fbank for `cuts`; return (cuts with features, [(id, file, reason)])."""
    from lhotse import CutSet
    from tqdm import tqdm

    config = config or FeatureConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    cuts = list(cuts)
    num_jobs = max(1, min(num_jobs, len(cuts)))
    # Many small chunks so the progress bar moves; one storage file per chunk.
    chunk = max(1, min(500, -(-len(cuts) // num_jobs)))
    jobs = [(cuts[i:i + chunk], out_dir / f"feats_{name}.{i // chunk:04d}.lca", config)
            for i in range(0, len(cuts), chunk)]
    done, bad = [], []
    if num_jobs == 1:
        results = map(_work, jobs)
    else:
        pool = ProcessPoolExecutor(num_jobs)
        results = pool.map(_work, jobs)
    with tqdm(total=len(cuts), desc=f"fbank {name}", mininterval=2.0) as bar:
        for d, b in results:
            done.extend(d)
            bad.extend(b)
            bar.update(len(d) + len(b))
    if num_jobs > 1:
        pool.shutdown()
    return CutSet.from_cuts(done), bad
