"""HEVC (ISO 23008-2) intra through x265, monochrome 4:0:0 at 8, 10 or 12 bits.

x265 and an HEVC decoder (libde265) come with ``pillow-heif``'s wheels, which drive them through
libheif; no system ffmpeg is needed. libheif wraps the bitstream in a HEIF file, but the bytes we
return and count are the raw HEVC bitstream (Annex B: VPS, SPS, PPS, then the slice NAL units, each
behind a 4-byte start code), as ``x265 --output`` or ``ffmpeg -f hevc`` would write it. Decoding
puts the same NAL units back into a minimal HEIF file (ISO 23008-12) for libheif.

libheif pads images narrower or shorter than 64 pixels (and odd sizes) and crops them back with a
HEIF ``clap`` box, which a raw bitstream cannot carry; we move that crop into the SPS conformance
window instead, so the raw stream decodes to the exact image size with any HEVC decoder.

Lossless is x265's ``lossless=1`` (transform and quantisation bypass). Lossy is a constant-QP
sweep (QP 0..51, larger = fewer bits); x265 cannot go below QP 0, which caps the reachable rate
(about 1.4-1.6 bpp on 12-bit CT, 0.6 bpp on 11-bit CT coded at depth 12). Preset ``medium``
(x265's default) with ``tune=psnr``, one worker thread.
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medcodec.codecs.base import Codec, CodingSpec, Knob, Mode, checked_shape, unsigned_dtype
from medcodec.errors import CorruptStreamError

_START = b"\x00\x00\x00\x01"
_VPS, _SPS, _PPS = 32, 33, 34
_X265_PARAMS = {"preset": "medium", "tune": "psnr", "x265:pools": "1", "x265:frame-threads": "1"}


def _hevc_depth(bits: int) -> int:
    """The HEVC bit depth that holds ``bits`` bits: 8, 10 or 12 (x265's builds)."""
    return 8 if bits <= 8 else 10 if bits <= 10 else 12


class HevcCodec(Codec):
    name = "hevc"
    description = "HEVC intra (x265 via libheif): Main 4:0:0 up to 12 bits, lossless and QP"
    modes: ClassVar = frozenset({Mode.LOSSLESS, Mode.LOSSY})
    min_bits = 1
    max_bits = 12
    knob = Knob("qp", 0, 51, rate_increases=False, integer=True)
    dicom_method = "ISO_23008_2"
    max_side = 65528  # the coded size (a multiple of 8) must stay below 2**16

    @classmethod
    def available(cls) -> bool:
        return _probe()

    @classmethod
    def version(cls) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        decoder = info.get("decoders", {}).get("libde265", "libde265")
        return (
            f"{info.get('HEIF', 'x265')}, {decoder}, libheif {info.get('libheif', '?')} "
            f"(pillow-heif {pillow_heif.__version__})"
        )

    def encode(self, array: np.ndarray, bits: int, spec: CodingSpec) -> bytes:
        self.check(bits, spec)
        if spec.mode is Mode.LOSSLESS:
            return _encode(array, _hevc_depth(bits), None)
        return _encode(array, _hevc_depth(bits), round(self.knob_value(spec)))

    def decode(self, data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
        decoded = checked_shape(_decode(bytes(data), shape), shape, self.name)
        out = np.empty(shape, dtype=unsigned_dtype(bits))
        np.minimum(decoded, (1 << bits) - 1, out=out, casting="unsafe")
        return out


def _encode(array: np.ndarray, depth: int, qp: int | None) -> bytes:
    """Raw HEVC bitstream of one monochrome image; ``qp=None`` codes it losslessly."""
    import pillow_heif

    data = np.ascontiguousarray(array, dtype=unsigned_dtype(depth).newbyteorder("<"))
    params = dict(_X265_PARAMS)
    if qp is not None:
        params["x265:qp"] = str(qp)
    rows, cols = data.shape
    buf = io.BytesIO()
    pillow_heif.encode(
        "L" if depth == 8 else f"I;{depth}",
        (cols, rows),
        data.tobytes(),
        buf,
        quality=-1 if qp is None else 50,  # a lossy quality is overridden by the constant QP
        bit_depth=depth,
        enc_params=params,
        save_nclx_profile=False,
        tile_size=0,
    )
    nals = [
        _crop_sps(nal, rows, cols) if _nal_type(nal) == _SPS else nal
        for nal in _heif_to_nals(buf.getvalue())
    ]
    return b"".join(_START + nal for nal in nals)


def _decode(stream: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Decode a raw HEVC bitstream made by :func:`_encode` (any failure: corrupt stream)."""
    import pillow_heif

    heif = _annexb_to_heif(stream, shape)
    try:
        image = pillow_heif.open_heif(
            io.BytesIO(heif), convert_hdr_to_8bit=False, hdr_to_16bit=False
        )
        return np.asarray(image)
    except Exception as exc:  # libheif raises ValueError, EOFError, RuntimeError, ...
        raise CorruptStreamError(f"HEVC stream does not decode: {exc}") from None


@functools.lru_cache(maxsize=1)
def _probe() -> bool:
    """pillow-heif importable, with an x265 encoder that really codes 12-bit monochrome."""
    try:
        import pillow_heif

        info = pillow_heif.libheif_info()
        if not info.get("HEIF") or "libde265" not in info.get("decoders", {}):
            return False
        probe = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 61) % 4096
        return bool(np.array_equal(_decode(_encode(probe, 12, None), (6, 10)), probe))
    except Exception:
        return False


# --- HEVC parameter sets (ITU-T H.265 7.3) -----------------------------------------------------


def _nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def _rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _ebsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes so that no 00 00 0x (x <= 3) appears."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _Bits:
    """MSB-first bit reader over an RBSP, with the Exp-Golomb codes of H.265 clause 9.2."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise CorruptStreamError("HEVC SPS is truncated")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CorruptStreamError("HEVC SPS holds an invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)


def _ue_bits(value: int) -> str:
    code = value + 1
    return "0" * (code.bit_length() - 1) + format(code, "b")


@dataclass(frozen=True)
class _Sps:
    """The SPS fields the HEIF wrapper needs, and where the conformance window sits."""

    rbsp: bytes
    sub_layers: int
    nesting: int
    profile_tier_level: bytes
    chroma: int
    luma_depth: int
    chroma_depth: int
    coded_width: int
    coded_height: int
    window: tuple[int, int, int, int]  # left, right, top, bottom in luma samples (4:0:0)
    window_start: int  # bit position of conformance_window_flag
    window_end: int  # bit position just after the window offsets

    @property
    def width(self) -> int:
        return self.coded_width - self.window[0] - self.window[1]

    @property
    def height(self) -> int:
        return self.coded_height - self.window[2] - self.window[3]


def _parse_sps(nal: bytes) -> _Sps:
    rbsp = _rbsp(nal)
    reader = _Bits(rbsp)
    reader.u(16)  # NAL unit header
    reader.u(4)  # sps_video_parameter_set_id
    sub_layers = reader.u(3)
    nesting = reader.u(1)
    ptl = bytes(reader.u(8) for _ in range(12))  # general profile/tier/level, byte aligned
    if sub_layers:
        present = [(reader.u(1), reader.u(1)) for _ in range(sub_layers)]
        reader.u(2 * (8 - sub_layers))
        for profile, level in present:
            reader.u(88 * profile + 8 * level)
    reader.ue()  # sps_seq_parameter_set_id
    chroma = reader.ue()
    if chroma == 3:
        reader.u(1)  # separate_colour_plane_flag
    width = reader.ue()
    height = reader.ue()
    window_start = reader.pos
    window = (0, 0, 0, 0)
    if reader.u(1):
        sub_w, sub_h = (2 if chroma in (1, 2) else 1), (2 if chroma == 1 else 1)
        left, right, top, bottom = (reader.ue() for _ in range(4))
        window = (sub_w * left, sub_w * right, sub_h * top, sub_h * bottom)
    window_end = reader.pos
    sps = _Sps(
        rbsp, sub_layers, nesting, ptl, chroma, reader.ue(), reader.ue(),
        width, height, window, window_start, window_end,
    )  # fmt: skip
    if chroma > 3 or sps.luma_depth > 8 or sps.chroma_depth > 8:
        raise CorruptStreamError("HEVC SPS holds an impossible format")
    if not (0 < sps.width <= width < 2**16 and 0 < sps.height <= height < 2**16):
        raise CorruptStreamError("HEVC SPS holds an impossible picture size")
    return sps


def _crop_sps(nal: bytes, rows: int, cols: int) -> bytes:
    """The SPS with its conformance window cropping the picture to ``rows x cols``."""
    sps = _parse_sps(nal)
    if sps.chroma != 0:
        raise RuntimeError("x265 coded a monochrome image with chroma")
    extra_w, extra_h = sps.width - cols, sps.height - rows
    if extra_w < 0 or extra_h < 0:
        raise RuntimeError(f"x265 coded {sps.width}x{sps.height} for a {cols}x{rows} image")
    if extra_w == extra_h == 0:
        return nal
    left, right, top, bottom = sps.window
    bits = "".join(format(byte, "08b") for byte in sps.rbsp)
    payload = bits.rstrip("0")[:-1]  # drop rbsp_stop_one_bit and the alignment zeros
    window = "1" + "".join(_ue_bits(v) for v in (left, right + extra_w, top, bottom + extra_h))
    bits = payload[: sps.window_start] + window + payload[sps.window_end :] + "1"
    bits += "0" * (-len(bits) % 8)
    return _ebsp(int(bits, 2).to_bytes(len(bits) // 8, "big"))


# --- HEIF (ISO 23008-12) <-> Annex B -------------------------------------------------------------


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, tuple[int, int]]:
    """Top-level boxes of an ISOBMFF byte range: type -> (payload start, payload end)."""
    end = len(data) if end is None else end
    found: dict[bytes, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise RuntimeError(f"HEIF box {kind!r} overruns its parent")
        found.setdefault(kind, (pos + header, pos + size))
        pos += size
    return found


def _heif_to_nals(heif: bytes) -> list[bytes]:
    """Parameter sets and slice NAL units of a single-image HEIF file written by libheif."""
    top = _boxes(heif)
    meta_start, meta_end = top[b"meta"]
    meta = _boxes(heif, meta_start + 4, meta_end)  # meta is a FullBox
    ipco = _boxes(heif, *_boxes(heif, *meta[b"iprp"])[b"ipco"])
    cstart, cend = ipco[b"hvcC"]
    config = heif[cstart:cend]
    length_size = (config[21] & 3) + 1
    nals: list[bytes] = []
    pos = 23
    for _ in range(config[22]):
        count = struct.unpack_from(">H", config, pos + 1)[0]
        pos += 3
        for _ in range(count):
            size = struct.unpack_from(">H", config, pos)[0]
            nals.append(config[pos + 2 : pos + 2 + size])
            pos += 2 + size
    mstart, mend = top[b"mdat"]
    pos = mstart
    while pos < mend:
        size = int.from_bytes(heif[pos : pos + length_size], "big")
        nals.append(heif[pos + length_size : pos + length_size + size])
        pos += length_size + size
    if pos != mend:
        raise RuntimeError("libheif wrote more than one coded image")
    return nals


def _split_annexb(stream: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes and trailing zero bytes removed)."""
    starts: list[int] = []
    pos = stream.find(b"\x00\x00\x01")
    while pos >= 0:
        starts.append(pos + 3)
        pos = stream.find(b"\x00\x00\x01", pos + 3)
    if not starts or stream[: starts[0] - 3].strip(b"\x00"):
        raise CorruptStreamError("not an HEVC Annex B stream (no start code at its head)")
    nals = []
    for i, begin in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(stream)
        nal = stream[begin:end].rstrip(b"\x00")
        if len(nal) < 2:
            raise CorruptStreamError("HEVC stream holds an empty NAL unit")
        nals.append(nal)
    return nals


def _hvcc(vps: list[bytes], sps: list[bytes], pps: list[bytes], info: _Sps) -> bytes:
    """HEVCDecoderConfigurationRecord (ISO 14496-15, 8.3.3) built from the parameter sets."""
    head = bytes([1]) + info.profile_tier_level
    head += struct.pack(
        ">HBBBBHBB",
        0xF000,  # reserved + min_spatial_segmentation_idc 0
        0xFC,  # reserved + parallelismType 0
        0xFC | info.chroma,
        0xF8 | info.luma_depth,
        0xF8 | info.chroma_depth,
        0,  # avgFrameRate
        ((info.sub_layers + 1) << 3) | (info.nesting << 2) | 3,  # 4-byte NAL lengths
        3,  # arrays: VPS, SPS, PPS
    )
    arrays = b""
    for kind, units in ((_VPS, vps), (_SPS, sps), (_PPS, pps)):
        arrays += struct.pack(">BH", 0x80 | kind, len(units))
        arrays += b"".join(struct.pack(">H", len(u)) + u for u in units)
    return head + arrays


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full_box(kind: bytes, payload: bytes, version: int = 0) -> bytes:
    return _box(kind, struct.pack(">I", version << 24) + payload)


def _annexb_to_heif(stream: bytes, shape: tuple[int, int]) -> bytes:
    """A minimal single-image HEIF file around a raw HEVC bitstream, for libheif to decode.

    The SPS must describe a ``shape`` picture: checked here, before libheif allocates anything.
    """
    sets: dict[int, list[bytes]] = {_VPS: [], _SPS: [], _PPS: []}
    slices: list[bytes] = []
    for nal in _split_annexb(stream):
        sets.get(_nal_type(nal), slices).append(nal)
    if not all(sets.values()) or not slices:
        raise CorruptStreamError("HEVC stream lacks a parameter set or coded slice")
    info = _parse_sps(sets[_SPS][0])
    if (info.height, info.width) != tuple(shape):
        raise CorruptStreamError(
            f"HEVC stream holds a {info.height}x{info.width} picture, expected "
            f"{shape[0]}x{shape[1]}"
        )
    ipco = _box(
        b"ipco",
        _box(b"hvcC", _hvcc(sets[_VPS], sets[_SPS], sets[_PPS], info))
        + _full_box(b"ispe", struct.pack(">II", info.width, info.height)),
    )
    ipma = _full_box(b"ipma", struct.pack(">IHBBB", 1, 1, 2, 0x81, 0x02))
    mdat_payload = b"".join(struct.pack(">I", len(n)) + n for n in slices)
    ftyp = _box(b"ftyp", b"heic" + struct.pack(">I", 0) + b"mif1heic")

    def meta(offset: int) -> bytes:
        return _full_box(
            b"meta",
            _full_box(b"hdlr", struct.pack(">I4s12x", 0, b"pict") + b"\x00")
            + _full_box(b"pitm", struct.pack(">H", 1))
            + _full_box(
                b"iloc", struct.pack(">BBHHHHII", 0x44, 0, 1, 1, 0, 1, offset, len(mdat_payload))
            )
            + _full_box(
                b"iinf",
                struct.pack(">H", 1)
                + _full_box(b"infe", struct.pack(">HH4s", 1, 0, b"hvc1") + b"\x00", version=2),
            )
            + _box(b"iprp", ipco + ipma),
        )

    offset = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(offset) + _box(b"mdat", mdat_payload)
