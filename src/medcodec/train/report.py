"""Training curves as a PNG: ``python -m medcodec.train.report LOG.csv... --out curves.png``.

Reads the per-step logs ``medcodec train --log`` writes (pixel-estimation network: phase,
step, train bits, validation bits, validation MSE) and plots validation MSE and bits per phase,
one line per log, so window shapes or settings can be compared as in the paper.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path


def plot(logs: Sequence[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    for log in logs:
        with open(log, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for col, phase in enumerate(("D", "B", "C")):
            mine = [r for r in rows if r["phase"] == phase]
            steps = [int(r["step"]) for r in mine]
            axes[0, col].plot(steps, [float(r["val_mse"]) for r in mine], label=log.stem)
            axes[1, col].plot(steps, [float(r["val_bits"]) for r in mine], label=log.stem)
            axes[0, col].set_title(f"phase {phase}: validation MSE of the estimate")
            axes[1, col].set_title(f"phase {phase}: validation bits per pixel")
            axes[1, col].set_xlabel("optimiser step")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    plot(args.logs, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
