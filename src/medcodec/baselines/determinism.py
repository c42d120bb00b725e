"""Do streams decode to the same pixels in another process? ``python -m
medcodec.baselines.determinism INPUT... --out DIR``.

Encodes every image with each codec (default: the CompressAI baselines at every quality and
medcodec lossy) in this process, keeping the decoded pixels, then decodes the same streams in
fresh Python processes with other thread counts (``MEDCODEC_THREADS``) and compares pixel by
pixel. CompressAI users report that hyperprior models often do not decode identically on
another machine or thread setup (CompressAI issues 279 and 309); medcodec's integer entropy
model is meant to. A failed decode counts as a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medcodec.codecs.base import CodingSpec, Mode, unsigned_dtype


def _settings(name: str, qualities: str) -> list[float]:
    from medcodec import codecs

    ladder = getattr(codecs.get(name).__class__, "ladder", None)
    if ladder:
        wanted = [int(q) for q in qualities.split(",")] if qualities else list(ladder)
        return [float(q) for q in wanted if q in ladder]
    return [8.0, 24.0]  # medcodec lossy: quantiser steps (about 1.9 and 0.9 bpp on CT)


def encode_all(inputs: Sequence[str], names: Sequence[str], work: Path, stride: int,
               limit: int | None, qualities: str) -> list[dict]:
    from medcodec import codecs
    from medcodec.bench import datasets, runner
    from medcodec.image import effective_bits

    items = []
    for image in runner.iter_images(datasets.discover(inputs), stride=stride, limit=limit):
        pixels = image.pixels.astype(np.int64)
        bits = effective_bits(pixels)
        shifted = (pixels - pixels.min()).astype(unsigned_dtype(bits))
        for name in names:
            codec = codecs.get(name)
            for q in _settings(name, qualities):
                data = codec.encode(shifted, bits, CodingSpec(Mode.LOSSY, 0, q))
                decoded = np.asarray(codec.decode(data, shifted.shape, bits))
                key = f"{len(items):04d}"
                (work / f"{key}.bin").write_bytes(data)
                np.save(work / f"{key}.npy", decoded)
                items.append({"key": key, "image": image.id, "codec": name, "setting": q,
                              "shape": list(shifted.shape), "bits": bits, "bytes": len(data)})
                print(f"encoded {image.id} {name} {q:g}: {len(data)} bytes", flush=True)
    (work / "items.json").write_text(json.dumps(items))
    return items


def decode_all(work: Path) -> list[dict]:
    """In this (fresh) process: decode every stream, compare with the encoder side's pixels."""
    from medcodec import codecs

    out = []
    for item in json.loads((work / "items.json").read_text()):
        expected = np.load(work / f"{item['key']}.npy")
        data = (work / f"{item['key']}.bin").read_bytes()
        try:
            got = np.asarray(codecs.get(item["codec"]).decode(data, tuple(item["shape"]),
                                                                item["bits"]))
            diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
            result = {"identical": bool(not diff.any()), "max_abs_diff": int(diff.max()),
                      "pixels_differing": int(np.count_nonzero(diff)), "error": ""}
        except Exception as exc:  # a decode that breaks is a mismatch too
            result = {"identical": False, "max_abs_diff": -1, "pixels_differing": -1,
                      "error": f"{type(exc).__name__}: {exc}"[:200]}
        out.append({**item, **result})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--codecs", default="bmshj2018-hyperprior,mbt2018-mean,cheng2020-attn,"
                   "medcodec")
    p.add_argument("--qualities", default="", help="ladder rungs to test (default: all)")
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--limit", type=int)
    p.add_argument("--threads", default="2,1", help="thread counts of the decoding processes")
    p.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    work = a.out / "streams"
    if a.decode_only:
        print(json.dumps(decode_all(work)))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in a.codecs.split(",") if n.strip()]
    items = encode_all(a.inputs, names, work, a.stride, a.limit, a.qualities)
    encoder_threads = os.environ.get("MEDCODEC_THREADS", "2")
    runs = {}
    for threads in a.threads.split(","):
        env = {**os.environ, "MEDCODEC_THREADS": threads.strip()}
        proc = subprocess.run([sys.executable, "-m", "medcodec.baselines.determinism",
                               "--out", str(a.out), "--decode-only"], env=env,
                              capture_output=True, text=True, check=True)
        runs[threads.strip()] = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = [f"Encoded in one process ({encoder_threads} threads), decoded in fresh processes.",
             "", "| codec | streams | decoder threads | identical | mismatch rate | "
             "max abs diff | failed decodes |", "|---|---|---|---|---|---|---|"]
    summary = []
    for name in names:
        for threads, results in runs.items():
            mine = [r for r in results if r["codec"] == name]
            if not mine:
                continue
            same = sum(r["identical"] for r in mine)
            failed = sum(bool(r["error"]) for r in mine)
            worst = max(r["max_abs_diff"] for r in mine)
            summary.append({"codec": name, "threads": threads, "streams": len(mine),
                            "identical": same, "failed": failed, "max_abs_diff": worst})
            lines.append(f"| {name} | {len(mine)} | {threads} | {same} | "
                         f"{1 - same / len(mine):.0%} | {worst} | {failed} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (a.out / "determinism.md").write_text(text)
    (a.out / "determinism.json").write_text(json.dumps({"summary": summary, "runs": runs,
                                                        "items": items}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
