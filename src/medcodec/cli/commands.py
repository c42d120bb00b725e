"""The work behind each CLI sub-command (argument parsing lives in ``medcodec.cli``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medcodec import codecs
from medcodec.errors import InputError, MedcodecError, OutputError
from medcodec.image import MedImage


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="slice", disable=quiet or None, leave=False,
                file=sys.stderr)


def _output_name(image: MedImage, taken: set[str]) -> str:
    """A readable, unique container name for one of several images."""
    source = Path(image.source_path or "image")
    stem = source.name
    for ext in (".nii.gz", ".nii", ".dcm", ".mha", ".mhd", ".nrrd", ".png", ".tiff", ".tif",
                ".npy"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"
    name, n = f"{stem}.mdcx", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.mdcx"
    taken.add(name)
    return name


#: The file being worked on, so that even an unexpected error names it (see ``cli.main``).
current_file: list[str] = []


def _working_on(name: str | None) -> None:
    current_file[:] = [name] if name else []


def _check_container_name(output: Path, many: bool) -> None:
    """``compress`` writes .mdcx containers: refuse names that promise another format."""
    from medcodec.io import format_from_name

    fmt = format_from_name(output)
    if many and output.suffix.lower() == ".mdcx":
        raise OutputError(f"{output}: the inputs hold several images, which are written as one "
                          ".mdcx each into a folder; give a folder for -o")
    if fmt not in (None, "container"):
        raise OutputError(f"{output}: compress writes .mdcx containers, not {fmt} "
                          "(name the output .mdcx; decompress writes other formats)")


def _coding_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"codec": args.codec, "mode": args.mode, "max_error": args.max_error,
            "quality": args.quality, "bpp": args.bpp, "inter_slice": args.inter_slice}


def _max_error_from_hu(image: MedImage, hu: float, mode: str) -> int:
    """Stored units whose error stays within ``hu`` Hounsfield units: floor(hu / slope)."""
    if mode != "near-lossless":
        raise InputError("--max-error-hu needs --mode near-lossless")
    slope = abs(float(image.rescale_slope or 1.0))
    units = int(hu // slope)
    if units < 1:
        raise InputError(f"--max-error-hu {hu:g} is below one stored unit "
                         f"(rescale slope {slope:g}); use lossless mode")
    return units


def _named(exc: MedcodecError, source: str | None) -> MedcodecError:
    """``exc`` with the input's name in front, unless the message already names it."""
    if not source or str(exc).startswith(source):
        return exc
    return type(exc)(f"{source}: {exc}")


def compress(args: argparse.Namespace) -> int:
    from medcodec._fs import check_writable
    from medcodec.io import read_all

    kwargs = _coding_kwargs(args)
    output = Path(args.output)
    _working_on(" ".join(args.inputs))
    passed_over: list[Path] = []
    images = read_all(args.inputs, skipped=passed_over)
    first = next(images, None)
    if first is None:
        raise InputError("no images found in the inputs")
    second = next(images, None)
    many = second is not None or output.is_dir() or args.output.endswith(("/", os.sep))
    _check_container_name(output, many)
    created = False
    if many:
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output}: several images need an output folder, this is a file")
        created = not output.exists()
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{output}: cannot make the output folder "
                              f"({exc.strerror or exc})") from None
    else:
        check_writable(output, args.force)

    def all_images():
        yield first
        if second is not None:
            yield second
            yield from images

    try:
        _compress_all(all_images(), output, many, kwargs, args)
    except BaseException:
        if created:  # a folder this run made and left empty goes too
            with contextlib.suppress(OSError):
                output.rmdir()
        raise
    _working_on(None)
    if passed_over:
        print(f"note: {len(passed_over)} DICOM file(s) without pixel data (DICOMDIR, reports, "
              f"RT objects) were passed over, e.g. {passed_over[0]}", file=sys.stderr)
    return 0


def _compress_all(images: Any, output: Path, many: bool, kwargs: dict[str, Any],
                  args: argparse.Namespace) -> None:
    from medcodec._fs import atomic_write_bytes, check_writable
    from medcodec.pipeline import compress as compress_image

    taken: set[str] = set()
    total_in = total_out = 0
    for image in images:
        target = output / _output_name(image, taken) if many else output
        _working_on(image.source_path)
        check_writable(target, args.force)
        try:
            if getattr(args, "max_error_hu", None) is not None:
                kwargs["max_error"] = _max_error_from_hu(image, args.max_error_hu, args.mode)
            with _progress(image.n_slices, target.name, args.quiet) as bar:
                data = compress_image(image, progress=bar.update, **kwargs)
            report = _report_compressed(image, target, data)  # before writing: cannot fail after
        except MedcodecError as exc:
            raise _named(exc, image.source_path) from None
        atomic_write_bytes(target, data, force=args.force)
        report()
        total_in += image.pixels.size
        total_out += len(data)
    if many:
        print(f"total: {8 * total_out / max(1, total_in):.3f} bpp over {total_in} pixels")


def _report_compressed(image: MedImage, target: Path, data: bytes) -> Callable[[], None]:
    """The lines that report a compressed image, ready to print once it is written."""
    from medcodec.io.dicom import NOTES_KEY
    from medcodec.pipeline import open_container

    container = open_container(data)
    header = container.header
    codec = header["codec"]
    errors = [s["max_abs_err"] for s in header["slices"]]
    coded = sum(e.length for e in container.reader.entries[: image.n_slices])
    bpp = 8 * len(data) / image.pixels.size
    mode = codec["mode"] + (f" (D={codec['max_error']})" if codec.get("max_error") else "")
    line = (f"{target}: {image.describe()} -> {codec['name']} {mode}, {len(data)} bytes, "
            f"{bpp:.3f} bpp (pixels {8 * coded / image.pixels.size:.3f} bpp + "
            f"{len(data) - coded} bytes of headers and source metadata), "
            f"ratio {image.pixels.nbytes / len(data):.2f}:1, max error {max(errors)}")
    notes = [f"  note: {note}" for note in image.meta.get(NOTES_KEY, [])[:5]]
    if len(image.meta.get(NOTES_KEY, [])) > 5:
        notes.append(f"  ... {len(image.meta[NOTES_KEY]) - 5} more notes: medcodec info {target}")

    def report() -> None:
        print(line)
        for note in notes:
            print(note, file=sys.stderr)

    return report


def _parse_slices(text: str | None, n: int) -> list[int] | None:
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise InputError(f"--slices: cannot read {part!r} (use e.g. 0,4,10-12)")
        lo = int(match.group(1))
        hi = int(match.group(2) or lo)
        if hi < lo or hi >= n:
            raise InputError(f"--slices: {part} is outside 0-{n - 1}")
        out.extend(range(lo, hi + 1))
    return out


def _output_target(args: argparse.Namespace, header: dict[str, Any], count: int) -> Path:
    """Where decompress writes, checked against what the container holds before decoding.

    ``-o DIR/`` (or an existing folder) means "into this folder": a DICOM series fills it, any
    other output is named after the container.
    """
    from medcodec.io import format_from_name

    output = Path(args.output)
    image = header["image"]
    fmt = args.format or format_from_name(output)
    as_dicom = fmt == "dicom" or (fmt is None and image.get("source_format") == "dicom")
    into_folder = args.output.endswith(("/", os.sep)) or output.is_dir()
    series = as_dicom and (image.get("meta") or {}).get("dicom_layout", "files") == "files" \
        and count > 1
    if series and output.suffix.lower() in (".dcm", ".dicom"):
        raise OutputError(f"{output}: a series of {count} slices is written as a folder of "
                          "DICOM files; give a folder path (or pick slices with --slices)")
    if not into_folder:
        return output
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: output exists and is not a folder")
    if as_dicom:
        return output  # the DICOM writer fills the folder with the source file names
    if fmt is None:
        raise OutputError(f"{output}: cannot tell the output format for a folder; use --format")
    ext = {"nifti": ".nii.gz", "png": ".png", "tiff": ".tiff", "npy": ".npy", "itk": ".mha"}[fmt]
    return output / (Path(args.input).name.removesuffix(".mdcx") + ext)


def decompress(args: argparse.Namespace) -> int:
    from medcodec.io import write
    from medcodec.pipeline import open_container

    _working_on(args.input)
    with open_container(args.input) as container:
        indices = _parse_slices(args.slices, container.n_slices)
        count = container.n_slices if indices is None else len(indices)
        target = _output_target(args, container.header, count)
        with _progress(count, Path(args.input).name, args.quiet) as bar:
            try:
                image = container.image(indices, progress=bar.update)
            except MedcodecError as exc:
                raise type(exc)(f"{args.input}: {exc}") from None
    if args.output.endswith(("/", os.sep)):
        Path(args.output).mkdir(parents=True, exist_ok=True)  # "-o DIR/": write inside DIR
    written = write(image, target, format=args.format, force=args.force)
    where = written[0] if len(written) == 1 else f"{target} ({len(written)} files)"
    print(f"{args.input} -> {where}: {image.describe()}")
    return 0


def _codec_banner() -> list[dict[str, Any]]:
    return [
        {"codec": name, "available": ok, "version": version, "description": description}
        for name, ok, version, description in codecs.availability()
    ]


def info(args: argparse.Namespace) -> int:
    if args.codecs or not args.file:
        rows = _codec_banner()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            from medcodec._version import __version__

            print(f"medcodec {__version__} codecs:")
            for row in rows:
                mark = "yes" if row["available"] else "no "
                print(f"  {row['codec']:<10} {mark}  {row['description']}")
                print(f"  {'':<10}      {row['version']}")
        if not args.file:
            return 0
    from medcodec.container import looks_like_container

    path = Path(args.file)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    summary = (_container_info(path) if path.is_file() and looks_like_container(path)
               else _image_info(path))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for key, value in summary.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"  {k}: {v}")
            else:
                print(f"{key}: {value}")
    return 0


def _weights_used(digests: dict[str, str]) -> str:
    """The models a learned container's streams need (its header's ``weights_sha256``), as
    the zoo names them with their stream id."""
    from medcodec.models.zoo import ZOO

    names = {kind: ZOO[kind.encode("ascii")].summary for kind in digests
             if kind.encode("ascii") in ZOO}
    return ", ".join(f"{names.get(kind, kind)} {digest[:8]}"
                     for kind, digest in sorted(digests.items()))


def _dicom_summary(blob: bytes) -> dict[str, Any]:
    import io
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(blob), force=True)
    keys = ("Modality", "Manufacturer", "StudyDate", "SeriesDescription", "SeriesInstanceUID",
            "SOPClassUID", "BitsAllocated", "BitsStored", "PixelRepresentation",
            "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
            "LossyImageCompression")
    out = {k: str(ds.get(k)) for k in keys if k in ds}
    out["elements"] = len(ds)
    return out


def _container_info(path: Path) -> dict[str, Any]:
    from medcodec.pipeline import open_container

    with open_container(path) as container:
        header = container.header
        image = header["image"]
        codec = header["codec"]
        pixels = image["slices"] * image["rows"] * image["cols"]
        nbytes = container.compressed_bytes
        errors = [s["max_abs_err"] for s in header["slices"]]
        out: dict[str, Any] = {
            "file": str(path),
            "format": f"medcodec container {'.'.join(map(str, container.reader.version))}",
            "written by": header.get("writer"),
            "shape": f"{image['slices']} x {image['rows']} x {image['cols']}",
            "pixels": f"{image['dtype']}, {image['bits_stored']} bits stored, "
                      f"{image.get('photometric')}",
            "modality": image.get("modality"),
            "source": f"{image.get('source_format')} {image.get('source_name') or ''}".strip(),
            "codec": f"{codec['name']} ({codec.get('version')})",
            **({"weights used": _weights_used(codec["weights_sha256"])}
               if codec.get("weights_sha256") else {}),
            "mode": codec["mode"] + (f", max error {codec['max_error']}"
                                     if codec.get("max_error") else ""),
            "size": f"{nbytes} bytes, {8 * nbytes / pixels:.3f} bpp, "
                    f"ratio {container.ratio:.2f}:1",
            "max abs error": max(errors),
            "spacing": image.get("pixel_spacing"),
            "attachments": len((header.get("attachments") or {}).get("names", [])),
        }
        blobs = container.attachments()
        if "dicom/0" in blobs:
            out["dicom"] = _dicom_summary(blobs["dicom/0"])
        notes = (image.get("meta") or {}).get("dicom_notes")
        if notes:
            out["elements not carried verbatim"] = {str(k): n for k, n in enumerate(notes)}
        return out


def _image_info(path: Path) -> dict[str, Any]:
    from medcodec.io import read_all

    images = list(read_all([path]))
    out: dict[str, Any] = {"file": str(path), "images": len(images)}
    for i, image in enumerate(images):
        entry: dict[str, Any] = {
            "source": image.source_path,
            "format": image.source_format,
            "shape": f"{image.n_slices} x {image.rows} x {image.cols}",
            "pixels": image.describe(),
            "range": f"{int(image.pixels.min())} .. {int(image.pixels.max())}",
            "rescale": f"slope {image.rescale_slope}, intercept {image.rescale_intercept}",
            "spacing": image.pixel_spacing,
        }
        if image.meta.get("dicom_notes"):
            entry["elements not carried verbatim"] = image.meta["dicom_notes"]
        out[f"image {i}"] = entry
    return out


# --------------------------------------------------------------------------------------------
# demo


def _demo_image_path() -> Path:
    """A real CT slice installed by pip (pydicom-data: TCIA Pancreas-CT, CC BY 3.0)."""
    try:
        import data_store
    except ImportError:
        raise InputError(
            "the demo image comes from the pydicom-data package: "
            "pip install -c constraints.txt -e '.[demo]'"
        ) from None
    path = Path(data_store.__file__).parent / "data" / "explicit_VR-UN.dcm"
    if not path.is_file():
        raise InputError(f"{path}: demo image missing from the pydicom-data package")
    return path


def _measure(image: MedImage, **kwargs: Any) -> tuple[dict[str, Any], bytes, MedImage]:
    """Encode and decode once (after a warm-up), timing each, as BENCHMARK.md asks."""
    from medcodec.bench.metrics import psnr
    from medcodec.pipeline import compress as compress_image
    from medcodec.pipeline import decompress as decompress_bytes
    from medcodec.pipeline import open_container

    compress_image(image, **kwargs)  # warm-up: imports, library initialisation
    enc, dec = [], []
    for _ in range(3):
        start = time.perf_counter()
        data = compress_image(image, **kwargs)
        enc.append(time.perf_counter() - start)
        start = time.perf_counter()
        back = decompress_bytes(data)
        dec.append(time.perf_counter() - start)
    error = int(np.abs(back.pixels.astype(np.int64) - image.pixels.astype(np.int64)).max())
    row = {
        "codec": open_container(data).header["codec"]["name"],
        "bytes": len(data),
        "bpp": 8 * len(data) / image.pixels.size,
        "psnr": psnr(image.pixels, back.pixels, image.effective_bits),
        "max_abs_err": error,
        "enc_ms": 1000 * float(np.median(enc)),
        "dec_ms": 1000 * float(np.median(dec)),
    }
    return row, data, back


def demo(args: argparse.Namespace) -> int:
    from medcodec.io import read

    source = _demo_image_path()
    image = read(source)
    print(f"input: {source.name} (TCIA Pancreas-CT via pydicom-data): {image.describe()}")
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        _demo_table(image, out_dir)
        print(f"outputs (containers and decoded DICOM) in {out_dir}")
    else:
        with tempfile.TemporaryDirectory(prefix="medcodec-demo-") as tmp:
            _demo_table(image, Path(tmp))
        print("outputs were written to a temporary folder and removed; keep them with --out DIR")
    return 0


def _demo_table(image: MedImage, out_dir: Path) -> None:
    from medcodec._fs import atomic_write_bytes
    from medcodec.io import write

    settings: list[tuple[str, str, dict[str, Any]]] = [
        ("lossless", "jpegls", {"mode": "lossless"}),
        ("lossless", "medcodec", {"mode": "lossless"}),
        ("near-lossless D=1", "jpegls", {"mode": "near-lossless", "max_error": 1}),
        ("near-lossless D=1", "medcodec", {"mode": "near-lossless", "max_error": 1}),
        ("near-lossless D=4", "jpegls", {"mode": "near-lossless", "max_error": 4}),
        ("near-lossless D=4", "medcodec", {"mode": "near-lossless", "max_error": 4}),
        ("lossy", "medcodec", {"mode": "lossy", "quality": 24.0}),
        ("lossy, same bpp", "jpeg2000", {"mode": "lossy"}),  # bpp: medcodec's, filled below
    ]
    header = (f"{'setting':<20} {'codec':<8} {'bytes':>8} {'bpp':>7} {'ratio16':>8} "
              f"{'psnr dB':>8} {'max err':>8} {'enc ms':>7} {'dec ms':>7}")
    print(header)
    print("-" * len(header))
    lossy_bpp = None
    for label, codec, kwargs in settings:
        if label == "lossy, same bpp":
            kwargs = {**kwargs, "bpp": lossy_bpp}
        row, data, back = _measure(image, codec=codec, **kwargs)
        if codec == "medcodec" and kwargs.get("mode") == "lossy":
            lossy_bpp = row["bpp"]
        name = f"{label.split(',')[0].replace(' ', '_').replace('=', '')}_{codec}.mdcx"
        atomic_write_bytes(out_dir / name, data, force=True)
        write(back, out_dir / name.replace(".mdcx", ".dcm"), force=True)
        psnr = "inf" if np.isinf(row["psnr"]) else f"{row['psnr']:.2f}"
        print(f"{label:<20} {row['codec']:<8} {row['bytes']:>8} {row['bpp']:>7.3f} "
              f"{16 / row['bpp']:>8.2f} {psnr:>8} {row['max_abs_err']:>8} "
              f"{row['enc_ms']:>7.1f} {row['dec_ms']:>7.1f}")


# --------------------------------------------------------------------------------------------
# bench


def _number_list(text: str, kind: type, option: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option}: cannot read {text!r} (use e.g. 1,2,4)") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{option}: values must be positive")
    return values


def bench(args: argparse.Namespace) -> int:
    import shlex

    from medcodec.bench import datasets, report, runner

    if args.codecs:
        names = [c.strip() for c in args.codecs.split(",") if c.strip()]
        for name in names:
            codecs.get(name)  # unknown or unavailable: clear error before any work
        unavailable: list[str] = []
    else:
        names = [n for n, ok, _, _ in codecs.availability() if ok]
        unavailable = [n for n, ok, _, _ in codecs.availability() if not ok]
        for name in unavailable:
            print(f"note: codec {name} is not available on this install and is skipped")
    tasks = runner.plan_tasks(names, args.mode, _number_list(args.max_error, int, "--max-error"),
                              _number_list(args.bpp, float, "--bpp"))
    if not tasks:
        raise InputError("no codec offers the requested mode")
    volumes = datasets.discover(args.inputs)
    if not volumes:
        raise InputError("no images found in the inputs")
    out_dir = Path(args.out)
    start = time.perf_counter()
    load_failures: list[tuple[str, str, str]] = []
    images = runner.iter_images(volumes, stride=max(1, args.stride), limit=args.limit,
                                on_error=lambda vid, msg: load_failures.append((vid, "read", msg)))
    from tqdm import tqdm

    with tqdm(desc="bench", unit="image", disable=args.quiet or None, file=sys.stderr) as bar:
        rows, failures = runner.run(images, tasks, out_dir,
                                    workers=runner.worker_count(args.workers),
                                    repeat=max(1, args.repeat), progress=bar.update)
    failures = load_failures + failures
    skipped: dict[str, set[str]] = {}
    real_failures = []
    for image_id, what, message in failures:
        if message.startswith("skipped: "):
            skipped.setdefault(what.split()[0], set()).add(message[len("skipped: "):].split(
                ", this image")[0])
        else:
            real_failures.append((image_id, what, message))
            print(f"failed: {image_id} ({what}): {message.splitlines()[0][:200]}",
                  file=sys.stderr)
    notes = [f"{codec} skipped on some images ({'; '.join(sorted(reasons))})"
             for codec, reasons in sorted(skipped.items())]
    failures = real_failures
    wall = time.perf_counter() - start
    command = "medcodec " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = report.write_report(rows, out_dir, command, len(failures), unavailable, wall,
                                  notes)
    print((out_dir / "report.md").read_text())
    print(f"{len(rows)} rows in {out_dir / 'results.csv'}; {summary['images']} images; "
          f"{len(failures)} failures; {wall:.0f} s")
    return 1 if failures and not rows else 0
