"""VVC (H.266, ISO 23090-3) intra through VVenC, driven by the ffmpeg of ``imageio-ffmpeg``.

An optional anchor (``pip install medcodec[vvc]``): the ffmpeg binary bundled with the
``imageio-ffmpeg`` wheel is built with Fraunhofer's VVenC encoder (``libvvenc``) and FFmpeg's
native VVC decoder. The codec is available only when that binary offers both and really codes a
monochrome picture; otherwise it is absent from the benchmark like any missing library.

What is coded:

* One picture, intra only (an IDR picture, ``IntraPeriod=1``), constant QP (the knob, 0..63,
  larger = fewer bits). VVenC preset ``medium`` (its default, the usual anchor setting), one
  thread, perceptual QP adaptation off (``-qpa 0``, the analogue of x265's ``tune=psnr``), no
  access unit delimiter.
* Monochrome 4:0:0 at 10 bits (Main 10): libvvenc takes only ``yuv420p10le`` input, so the grey
  image goes in as the luma plane beside constant chroma planes (512), and ``ChromaFormatIDC=400``
  makes VVenC drop them: the bitstream holds luma only and decodes as ``gray10le``.
* 10 bits only: an image of ``B > 10`` bits is coded as ``x >> (B - 10)`` and decoded as
  ``(y << (B - 10)) + (1 << (B - 11))`` (the middle of each bin), so the reachable PSNR is capped
  by the 10-bit depth (about 71 dB, whatever the depth: the rounding error grows with the
  peak), lower still once the QP adds its own error; a BD-rate against deeper codecs is
  therefore measured over a PSNR interval that stops below that cap. ``B <= 10`` is
  coded as is, in the 10-bit range.
* Sizes: the picture is padded by edge replication to a multiple of 8 of at least 16 per side
  (smaller ones fail in ffmpeg's wrapper), and the SPS conformance window crops the padding, so
  the stream decodes to the exact image size. ffmpeg's libvvenc wrapper cannot return a stream of
  more than width x height bytes (8 bpp, reached by noise at low QP): such an image is coded
  again with extra padding rows below (cropped the same way), which cost a few bytes.

The bytes returned and counted are the raw VVC bitstream (Annex B: SPS, PPS, any APS and the
slice NAL units, each behind a start code), as ``ffmpeg -f vvc`` writes it. ffmpeg runs as a
subprocess on raw planes in a private temporary folder (always removed), under a timeout. A
failed encode is a CodecUnavailableError; a stream that does not decode to one picture of the
expected size is a CorruptStreamError. As with HEVC, FFmpeg's decoder conceals some damage
(e.g. a stream cut in its last few hundred bytes), so such a stream may decode to a wrong image
of the right shape; in a ``.mdcx`` container the slice's CRC32 of the decoded pixels catches it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from typing import ClassVar

import numpy as np

from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode, unsigned_dtype
from medcodec.errors import CodecUnavailableError, CorruptStreamError

DEPTH = 10
PRESET = "medium"
#: VVenC settings beyond the preset: luma only, all intra, no access unit delimiter.
VVENC_PARAMS = "ChromaFormatIDC=400:IntraPeriod=1:AccessUnitDelimiter=0"
MIN_SIDE = 16  # smaller pictures fail in ffmpeg's libvvenc wrapper (8 x 8, 12 x 12, 1 x 64)
_MID_CHROMA = 1 << (DEPTH - 1)


def _timeout(pixels: int) -> float:
    """Seconds an ffmpeg run may take: generous (VVenC needs ~1-5 s per 512 x 512 slice)."""
    return 60.0 + pixels / 2000.0


class VvcCodec(Codec):
    name = "vvc"
    description = "VVC/H.266 intra (VVenC medium via imageio-ffmpeg): 4:0:0 at 10 bits, QP"
    modes: ClassVar = frozenset({Mode.LOSSY})
    min_bits = 1
    max_bits = 16  # deeper than 10 bits: the top 10 bits are coded (see the module docstring)
    knob = Knob("qp", 0, 63, rate_increases=False, integer=True)
    dicom_method = None  # DICOM has no VVC defined term for (0028,2114) yet
    max_side = 8192  # VVC level 6.x pictures; larger sizes are not tested
    #: Printed when the codec is asked for but unavailable.
    install_hint: ClassVar[str] = (
        "install the optional extra: pip install 'medcodec[vvc]' (imageio-ffmpeg, whose ffmpeg "
        "must offer the libvvenc encoder and a VVC decoder)"
    )

    @classmethod
    def available(cls) -> bool:
        return _probe() is not None

    @classmethod
    def version(cls) -> str:
        probe = _probe()
        if probe is None:
            return "-"
        return probe[3]

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        self.check(bits, spec)
        self.check_shape(*np.shape(array))
        qp = round(self.knob_value(spec))
        return _encode(_to_depth(np.asarray(array), bits), qp, _tool())

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        rows, cols = (int(v) for v in shape)
        if rows < 1 or cols < 1 or max(rows, cols) > self.max_side:
            raise CorruptStreamError(f"VVC: impossible image size {rows}x{cols}")
        return _from_depth(_decode(bytes(data), (rows, cols), _tool()), bits)


def _to_depth(array: np.ndarray, bits: int) -> np.ndarray:
    """The samples as coded at 10 bits: the top 10 bits of deeper data, shallower data as is."""
    data = np.asarray(array, dtype=np.uint32)
    if bits > DEPTH:
        data = data >> (bits - DEPTH)
    return np.minimum(data, (1 << DEPTH) - 1).astype("<u2")


def _from_depth(coded: np.ndarray, bits: int) -> np.ndarray:
    """Decoded 10-bit samples back at ``bits`` bits (mid-bin for deeper data), clamped."""
    data = coded.astype(np.uint32)
    if bits > DEPTH:
        shift = bits - DEPTH
        data = (data << shift) + (1 << (shift - 1))
    out = np.empty(coded.shape, dtype=unsigned_dtype(bits))
    np.minimum(data, (1 << bits) - 1, out=out, casting="unsafe")
    return out


def _tool() -> str:
    """The ffmpeg binary the probe found working, else a clear CodecUnavailableError."""
    probe = _probe()
    if probe is None:
        raise CodecUnavailableError(f"codec 'vvc' is not available: {VvcCodec.install_hint}")
    return probe[0]


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # ImportError, or RuntimeError when it finds no binary
        raise CodecUnavailableError(
            f"codec 'vvc' needs imageio-ffmpeg's ffmpeg: {exc}; {VvcCodec.install_hint}"
        ) from None


def _run(cmd: list[str], timeout: float) -> tuple[int, str]:
    """Return code and the tail of stderr of one ffmpeg run (OSError/timeout: code -1)."""
    try:
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return -1, f"ffmpeg ran longer than {timeout:.0f} s"
    except OSError as exc:
        return -1, f"ffmpeg could not run: {exc}"
    message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return proc.returncode, " | ".join(message[-3:])[-600:]


def _encode(samples: np.ndarray, qp: int, ffmpeg: str) -> bytes:
    """Raw VVC bitstream of one 10-bit monochrome picture at constant ``qp``.

    The picture is padded (edge replication) to a multiple of 8 of at least 16 per side, and the
    SPS conformance window crops the padding, so the stream decodes to the exact size. ffmpeg's
    libvvenc wrapper holds an access unit in a buffer of width x height bytes and fails on a
    bigger one (above 8 bpp: noise at low QP); such pictures are coded again with more padding
    rows below, which raise that buffer and cost a few bytes.
    """
    rows, cols = samples.shape
    message = ""
    for extra in (0, rows, 3 * rows):
        padded_rows = max(MIN_SIDE, rows + extra)
        padded_rows += -padded_rows % 8
        padded_cols = max(MIN_SIDE, cols) + (-max(MIN_SIDE, cols) % 8)
        data, message = _encode_padded(samples, padded_rows, padded_cols, qp, ffmpeg)
        if data:
            return data
    raise CodecUnavailableError(
        f"VVC encoder failed on a {rows}x{cols} image at QP {qp}: {message or 'no output'}"
    )


def _encode_padded(
    samples: np.ndarray, padded_rows: int, padded_cols: int, qp: int, ffmpeg: str
) -> tuple[bytes, str]:
    """One ffmpeg run: the stream (empty on failure) and ffmpeg's last words."""
    rows, cols = samples.shape
    picture = np.pad(samples, ((0, padded_rows - rows), (0, padded_cols - cols)), mode="edge")
    chroma = np.full((padded_rows // 2, padded_cols // 2), _MID_CHROMA, dtype="<u2").tobytes()
    window = (
        f"ConformanceWindowMode=3:ConfWinRight={padded_cols - cols}"
        f":ConfWinBottom={padded_rows - rows}"
    )
    with tempfile.TemporaryDirectory(prefix="medcodec-vvc-") as tmp:
        source, target = os.path.join(tmp, "in.yuv"), os.path.join(tmp, "out.266")
        with open(source, "wb") as fh:
            fh.write(np.ascontiguousarray(picture, dtype="<u2").tobytes())
            fh.write(chroma)
            fh.write(chroma)
        cmd = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{padded_cols}x{padded_rows}",
            "-i", source, "-frames:v", "1", "-an", "-c:v", "libvvenc", "-preset", PRESET,
            "-qp", str(qp), "-qpa", "0", "-threads", "1",
            "-vvenc-params", f"{VVENC_PARAMS}:{window}", "-f", "vvc", "-y", target,
        ]  # fmt: skip
        code, message = _run(cmd, _timeout(padded_rows * padded_cols))
        data = b""
        if code == 0 and os.path.isfile(target):
            with open(target, "rb") as fh:
                data = fh.read()
    return data, message


def _decode(stream: bytes, shape: tuple[int, int], ffmpeg: str) -> np.ndarray:
    """One ``shape`` picture of 10-bit samples from a raw VVC bitstream (else: corrupt)."""
    rows, cols = shape
    if not stream.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        raise CorruptStreamError("not a VVC Annex B stream (no start code at its head)")
    expected = 2 * rows * cols
    with tempfile.TemporaryDirectory(prefix="medcodec-vvc-") as tmp:
        source, target = os.path.join(tmp, "in.266"), os.path.join(tmp, "out.raw")
        with open(source, "wb") as fh:
            fh.write(stream)
        cmd = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-xerror",
            "-threads", "1", "-f", "vvc", "-c:v", _decoder(ffmpeg), "-i", source,
            "-frames:v", "1", "-an", "-f", "rawvideo", "-pix_fmt", "gray10le", "-y", target,
        ]  # fmt: skip
        code, message = _run(cmd, _timeout(rows * cols))
        size = os.path.getsize(target) if os.path.isfile(target) else 0
        if code != 0 or size != expected:
            detail = (
                message
                if code != 0
                else (f"it holds {size // 2} samples, a {rows}x{cols} picture has {rows * cols}")
            )
            raise CorruptStreamError(f"VVC stream does not decode: {detail or 'no picture'}")
        with open(target, "rb") as fh:
            decoded = np.frombuffer(fh.read(), dtype="<u2")
    return decoded.reshape(rows, cols)


@functools.lru_cache(maxsize=4)
def _codecs_of(ffmpeg: str) -> tuple[frozenset[str], frozenset[str]]:
    """Names of the video encoders and decoders ``ffmpeg`` lists."""

    def listed(kind: str) -> frozenset[str]:
        proc = subprocess.run(
            [ffmpeg, "-hide_banner", "-nostdin", f"-{kind}"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        names = set()
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].startswith("V") and len(fields[0]) == 6:
                names.add(fields[1])
        return frozenset(names)

    return listed("encoders"), listed("decoders")


def _decoder(ffmpeg: str) -> str:
    """FFmpeg's native VVC decoder, else libvvdec."""
    decoders = _codecs_of(ffmpeg)[1]
    return "vvc" if "vvc" in decoders else "libvvdec"


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str, str, str, str] | None:
    """(ffmpeg, encoder, decoder, version) when imageio-ffmpeg's ffmpeg codes 4:0:0 VVC."""
    try:
        ffmpeg = _ffmpeg()
        encoders, decoders = _codecs_of(ffmpeg)
        if "libvvenc" not in encoders or not ({"vvc", "libvvdec"} & decoders):
            return None
        probe = ((np.arange(20 * 24).reshape(20, 24) * 37) % 1024).astype("<u2")
        stream = _encode(probe, 0, ffmpeg)
        back = _decode(stream, probe.shape, ffmpeg).astype(np.int64)
        if int(np.abs(back - probe).max()) > 64:
            return None
        return ffmpeg, "libvvenc", _decoder(ffmpeg), _describe(ffmpeg)
    except Exception:
        return None


def _describe(ffmpeg: str) -> str:
    """VVenC, decoder and ffmpeg versions, as far as the binary tells them."""
    import imageio_ffmpeg

    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-version"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    head = proc.stdout.decode("utf-8", "replace").splitlines()
    match = re.match(r"ffmpeg version (\S+)", head[0]) if head else None
    ffmpeg_version = match.group(1) if match else "?"
    vvenc = _vvenc_version(ffmpeg)
    decoder = "FFmpeg vvc" if _decoder(ffmpeg) == "vvc" else "libvvdec"
    return (
        f"VVenC {vvenc} ({PRESET}), {decoder} decoder, ffmpeg {ffmpeg_version} "
        f"(imageio-ffmpeg {imageio_ffmpeg.__version__})"
    )


def _vvenc_version(ffmpeg: str) -> str:
    """The version libvvenc logs when it opens (``libvvenc version: 1.x``), else '?'."""
    chroma = np.full((8, 8), _MID_CHROMA, dtype="<u2").tobytes()
    with tempfile.TemporaryDirectory(prefix="medcodec-vvc-") as tmp:
        source = os.path.join(tmp, "in.yuv")
        with open(source, "wb") as fh:
            fh.write(np.zeros((16, 16), dtype="<u2").tobytes() + chroma + chroma)
        proc = subprocess.run(
            [
                ffmpeg,
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "verbose",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p10le",
                "-s",
                "16x16",
                "-i",
                source,
                "-frames:v",
                "1",
                "-c:v",
                "libvvenc",
                "-threads",
                "1",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
    match = re.search(r"libvvenc version: (\S+)", proc.stderr.decode("utf-8", "replace"))
    return match.group(1) if match else "?"
