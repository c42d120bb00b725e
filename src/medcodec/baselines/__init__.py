"""Learned baselines from CompressAI, adapted to native-depth grayscale CT (optional).

CompressAI's ``bmshj2018-hyperprior`` (Balle et al. 2018), ``mbt2018-mean`` (Minnen et al. 2018)
and ``cheng2020-attn`` (Cheng et al. 2020), built from CompressAI's own model classes at sizes a
CPU can train, with one input and one output channel (the first layer of the analysis transform
and the last of the synthesis transform are CompressAI layers built for 1 channel instead of 3).
A ``B``-bit slice enters as ``x / (2**B - 1)`` in [0, 1]; the decoder scales back and rounds.
Streams are CompressAI's own range-coded strings (``model.compress`` / ``model.decompress``)
behind a small header, so every byte is counted.

They are measurement baselines for ``medcodec bench``, not codecs of the package: install them
with ``pip install -c constraints.txt -e ".[baselines]"``; without CompressAI they are absent.
Weights live outside the package (``MEDCODEC_BASELINES=DIR``, written by
``python -m medcodec.baselines.train``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: Architecture name -> (CompressAI class name, constructor sizes).
ARCHS: dict[str, tuple[str, dict[str, int]]] = {
    "bmshj2018-hyperprior": ("ScaleHyperprior", {"N": 32, "M": 48}),
    "mbt2018-mean": ("MeanScaleHyperprior", {"N": 32, "M": 48}),
    "cheng2020-attn": ("Cheng2020Attention", {"N": 32}),
}
#: Rate ladder, the lambda of each quality in CompressAI's form: loss = lambda * 255**2 * MSE
#: + bpp, MSE on [0, 1] data; steps of 3 around CompressAI's top 8-bit lambda (0.18). On 12-bit
#: CT, at the slope of a rate-distortion curve (dD/dR = -2 ln 2 D), lambda puts the optimum at
#: MSE = 1 / (lambda * 255**2 * 2 ln 2): 32.6-46.9 dB. The earlier ladder 0.5-13.5 (optimum
#: 46.5-60.9 dB) asked for more than these small CPU-trained models reach (about 40 dB), and
#: its rungs ended at one rate (docs/PAPER.md, section 2).
LAMBDAS: tuple[float, ...] = (0.02, 0.06, 0.18, 0.54)
ENV = "MEDCODEC_BASELINES"


def compressai_available() -> bool:
    return importlib.util.find_spec("compressai") is not None


def weights_dir() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def weight_path(arch: str, quality: int, root: Path | None = None) -> Path:
    root = root if root is not None else weights_dir()
    if root is None:
        raise FileNotFoundError(f"set {ENV} to the folder of the trained baseline weights")
    return root / f"{arch}-q{quality}.safetensors"
