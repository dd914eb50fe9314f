"""SpeechMoE: a CTC speech-recognition toolkit with top-1 routed mixture-of-experts layers.

Importing this package is cheap: submodules import torch and the optional
speech packages (kaldifeat, lhotse, kaldifst, ...) only where they are used.
"""

__version__ = "0.1.0"
