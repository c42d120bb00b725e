"""DICOM files built to be awkward, as hospitals' files are: every one goes through the whole
``compress`` -> ``decompress`` -> DICOM path, with its pixels and every element's value bytes
compared (or a clean, named refusal).

The files are assembled byte by byte here (no data files), so each quirk is exactly the one
named: pydicom would refuse to *write* most of them.
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
)

from medcodec.cli import main
from medcodec.io.dicom_header import element_bytes

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
#: Elements a lossless round trip may change: pixel data and the file meta group.
_PIXEL_TAGS = {0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009}
#: And the ones the lossy bookkeeping must change (PS3.3 C.7.6.1.1.5).
_LOSSY_TAGS = {0x00080008, 0x00080018, 0x00082111, 0x00282110, 0x00282112, 0x00282114}


def _element(tag: int, vr: str | None, value: bytes, implicit: bool,
             little: bool = True) -> bytes:
    order = "<" if little else ">"
    head = struct.pack(f"{order}HH", tag >> 16, tag & 0xFFFF)
    if implicit or vr is None:
        return head + struct.pack(f"{order}I", len(value)) + value
    if vr in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack(f"{order}I", len(value)) + value
    return head + vr.encode() + struct.pack(f"{order}H", len(value)) + value


def _item(elements: list[tuple[int, str | None, bytes]], implicit: bool) -> bytes:
    body = b"".join(_element(t, v, val, implicit) for t, v, val in elements)
    return b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body


def _part10(elements: list[tuple[int, str | None, bytes]], syntax: str, implicit: bool,
            tail: bytes = b"", little: bool = True) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = syntax
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta)
    body = b"".join(_element(t, v, val, implicit, little)
                    for t, v, val in sorted(elements, key=lambda e: e[0]))
    return b"\0" * 128 + b"DICM" + buf.getvalue() + body + tail


def _pixels(rows: int = 12, cols: int = 10, high: int = 4095) -> np.ndarray:
    rng = np.random.default_rng(rows * cols)
    return rng.integers(0, high, size=(rows, cols), endpoint=True).astype(np.uint16)


def _base(pixels: np.ndarray, bits_stored: int = 12,
          pixel_data: bytes | None = None, little: bool = True) -> list:
    rows, cols = pixels.shape
    us = "<H" if little else ">H"
    return [
        (0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
        (0x00080018, "UI", b"1.2.826.0.1.3680043.8.498.1\0"),
        (0x00080060, "CS", b"CT"),
        (0x0020000D, "UI", b"1.2.826.0.1.3680043.8.498.2\0"),
        (0x0020000E, "UI", b"1.2.826.0.1.3680043.8.498.3\0"),
        (0x00280002, "US", struct.pack(us, 1)),
        (0x00280004, "CS", b"MONOCHROME2 "),
        (0x00280010, "US", struct.pack(us, rows)),
        (0x00280011, "US", struct.pack(us, cols)),
        (0x00280100, "US", struct.pack(us, 16)),
        (0x00280101, "US", struct.pack(us, bits_stored)),
        (0x00280102, "US", struct.pack(us, bits_stored - 1)),
        (0x00280103, "US", struct.pack(us, 0)),
        (0x00281052, "DS", b"-1024 "),
        (0x00281053, "DS", b"1 "),
        (0x7FE00010, "OW", pixel_data if pixel_data is not None
         else pixels.astype(np.dtype(np.uint16).newbyteorder(us[0])).tobytes()),
    ]


def _jpegls_fragment(pixels: np.ndarray) -> bytes:
    """One JPEG-LS lossless frame, encapsulated (basic offset table item + one fragment)."""
    import jpeg_ls

    frame = bytes(jpeg_ls.encode(pixels))
    frame += b"\0" * (len(frame) % 2)
    return (b"\xfe\xff\x00\xe0" + struct.pack("<I", 0)
            + b"\xfe\xff\x00\xe0" + struct.pack("<I", len(frame)) + frame
            + b"\xfe\xff\xdd\xe0" + struct.pack("<I", 0))


def _icon_sequence(icon: np.ndarray) -> tuple[int, str, bytes]:
    """(0088,0200) Icon Image Sequence whose icon is JPEG-LS encapsulated, undefined length."""
    rows, cols = icon.shape
    elements = b"".join(_element(t, v, val, False) for t, v, val in [
        (0x00280002, "US", struct.pack("<H", 1)),
        (0x00280004, "CS", b"MONOCHROME2 "),
        (0x00280010, "US", struct.pack("<H", rows)),
        (0x00280011, "US", struct.pack("<H", cols)),
        (0x00280100, "US", struct.pack("<H", 8)),
        (0x00280101, "US", struct.pack("<H", 8)),
        (0x00280102, "US", struct.pack("<H", 7)),
        (0x00280103, "US", struct.pack("<H", 0)),
    ])
    pixel = b"\xe0\x7f\x10\x00OB\0\0\xff\xff\xff\xff" + _jpegls_fragment(icon)
    body = elements + pixel
    item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body
    return 0x00880200, "SQ", item


def _case(name: str) -> tuple[bytes, np.ndarray, dict]:
    """(file bytes, the pixels pydicom decodes, expectations) of one awkward case."""
    px = _pixels()
    implicit_base = _base(px)
    expect: dict = {}
    if name == "private value does not fit its dictionary VR (Philips, implicit)":
        extra = [(0x01F10010, "LO", b"ELSCINT1"), (0x01F11026, "FD", b"0.15"),
                 (0x01F11027, "DS", b"0.9876543210")]
        return _part10(implicit_base + extra, ImplicitVRLittleEndian, True), px, expect
    if name == "private elements without their creator (implicit)":
        extra = [(0x00091001, None, b"abc\0"), (0x00091002, None, b"\x01\x02\x03"),
                 (0x00191033, None, b"\0" * 7)]
        return _part10(implicit_base + extra, ImplicitVRLittleEndian, True), px, expect
    if name == "private elements without their creator (explicit)":
        extra = [(0x00091001, "LO", b"x "), (0x00091002, "OB", b"\x01\x02\x03\x04"),
                 (0x00431001, "FD", b"0.15")]
        return _part10(implicit_base + extra, ExplicitVRLittleEndian, False), px, expect
    if name == "explicit VRs that disagree with the dictionary":
        extra = [(0x00180050, "US", b"\x05\x00"), (0x00200013, "SS", b"\x07\x00"),
                 (0x00080070, "UN", b"Vendor"), (0x00091001, "ZZ", b"abcd")]
        return _part10(implicit_base + extra, ExplicitVRLittleEndian, False), px, expect
    if name == "malformed elements inside a sequence":
        item = _item([(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
                      (0x00280010, "US", b"\x01\x02\x03"),  # 3 bytes for US
                      (0x00091010, "FD", b"abc")], implicit=False)
        extra = [(0x00081140, "SQ", item)]
        return _part10(implicit_base + extra, ExplicitVRLittleEndian, False), px, expect
    if name == "implicit sequence of undefined length with unknown private items":
        item = _item([(0x00291010, None, b"\x00\x01"), (0x00291011, None, b"odd")],
                     implicit=True)
        value = item + b"\xfe\xff\xdd\xe0" + struct.pack("<I", 0)
        raw = _part10(implicit_base, ImplicitVRLittleEndian, True)
        element = struct.pack("<HHI", 0x0029, 0x1001, 0xFFFFFFFF) + value
        at = raw.index(b"\x20\x00\x0d\x00")  # insert before (0020,000D)
        return raw[:at] + element + raw[at:], px, expect
    if name == "trailing NULs, odd lengths and odd padding":
        extra = [(0x00081030, "LO", b"ABC\0"), (0x0008103E, "LO", b"odd"),
                 (0x00180050, "DS", b"1.5\0"), (0x00200013, "IS", b" 0042 "),
                 (0x00100010, "PN", b"Doe^John\0\0")]
        return _part10(implicit_base + extra, ImplicitVRLittleEndian, True), px, expect
    if name == "truncated optional element at the end of the file":
        tail = struct.pack("<HHI", 0x0009, 0x1010, 100) + b"abc"
        expect["note"] = "truncated"
        return _part10(implicit_base, ImplicitVRLittleEndian, True, tail=tail), px, expect
    if name == "item tag at the top level (JPEG-LS)":
        elements = _base(px, pixel_data=_jpegls_fragment(px))
        elements[-1] = (0x7FE00010, "OB", elements[-1][2])
        raw = _part10(elements, JPEGLSLossless, False)
        expect["note"] = "item or delimiter tag"
        expect["dropped"] = {0xFFFEE000}
        return raw + b"\xfe\xff\x00\xe0" + struct.pack("<I", 4) + b"ABCD", px, expect
    if name == "icon sequence with encapsulated pixel data (JPEG-LS)":
        icon = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).astype(np.uint8)
        elements = _base(px, pixel_data=_jpegls_fragment(px))
        elements[-1] = (0x7FE00010, "OB", elements[-1][2])
        raw = _part10([*elements, _icon_sequence(icon)], JPEGLSLossless, False)
        expect["note"] = "decoded and is carried uncompressed"
        expect["changed_under"] = 0x00880200
        expect["icon"] = icon
        return raw, px, expect
    if name == "malformed geometry and rescale":
        extra = [(0x00200032, "DS", b"a\\b\\c "), (0x00200037, "DS", b"1\\0\\0\\0\\1"),
                 (0x00280030, "DS", b"x "), (0x00180050, "DS", b"thick ")]
        elements = [e for e in implicit_base if e[0] not in (0x00281052, 0x00281053)]
        elements += [(0x00281052, "DS", b"abc "), (0x00281053, "DS", b"0 ")]
        return _part10(elements + extra, ImplicitVRLittleEndian, True), px, expect
    if name == "BitsStored smaller than the data":
        wide = _pixels(high=6000)
        expect["note"] = "bits set above BitsStored"  # readers mask them: so does medcodec
        return (_part10(_base(wide, bits_stored=12), ImplicitVRLittleEndian, True),
                wide & 0x0FFF, expect)
    if name == "explicit VR big endian (retired)":
        raw = _part10(_base(px, little=False), ExplicitVRBigEndian, False, little=False)
        expect["big_endian"] = True
        return raw, px, expect
    raise KeyError(name)


CASES = [
    "private value does not fit its dictionary VR (Philips, implicit)",
    "private elements without their creator (implicit)",
    "private elements without their creator (explicit)",
    "explicit VRs that disagree with the dictionary",
    "malformed elements inside a sequence",
    "implicit sequence of undefined length with unknown private items",
    "trailing NULs, odd lengths and odd padding",
    "truncated optional element at the end of the file",
    "item tag at the top level (JPEG-LS)",
    "icon sequence with encapsulated pixel data (JPEG-LS)",
    "malformed geometry and rescale",
    "BitsStored smaller than the data",
    "explicit VR big endian (retired)",
]


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _values(value: object) -> list:
    return list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]


def _run(*args: str) -> int:
    return main(["--quiet", *[str(a) for a in args]])


def _round_trip(tmp_path: Path, raw: bytes, *options: str) -> tuple[Path, Path, Path]:
    source = tmp_path / "in" / "awkward.dcm"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(raw)
    container = tmp_path / f"c{len(list(tmp_path.glob('c*')))}.mdcx"
    assert _run("compress", source, "-o", container, *options) == 0
    out = tmp_path / f"{container.stem}.dcm"
    assert _run("decompress", container, "-o", out) == 0
    return source, container, out


@pytest.mark.parametrize("case", CASES)
def test_awkward_file_round_trips_exactly(case: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    raw, expected_pixels, expect = _case(case)
    source, container, out = _round_trip(tmp_path, raw)
    original, written = _read(source), _read(out)
    np.testing.assert_array_equal(original.pixel_array, expected_pixels)
    np.testing.assert_array_equal(written.pixel_array, expected_pixels)
    capsys.readouterr()
    assert _run("info", container, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    notes = list((info.get("elements not carried verbatim") or {}).values())
    if "note" in expect:
        assert any(expect["note"] in n for n in notes), notes
    if expect.get("big_endian"):
        assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        for keyword in ("Rows", "Columns", "BitsStored", "RescaleIntercept", "SOPInstanceUID"):
            assert written[keyword].value == original[keyword].value
        return
    before, after = element_bytes(original), element_bytes(written)
    dropped = expect.get("dropped", set())
    for key, value in before.items():
        if key[0] in _PIXEL_TAGS or key[0] in dropped or key[0] == expect.get("changed_under"):
            continue
        assert key in after, f"{case}: element {key} was lost"
        assert after[key] == value, f"{case}: element {key} changed"
    if "icon" in expect:
        icon_item = written.IconImageSequence[0]
        assert "PixelData" in icon_item and not icon_item["PixelData"].is_undefined_length
        icon = np.frombuffer(icon_item.PixelData, np.uint8)[: expect["icon"].size]
        np.testing.assert_array_equal(icon.reshape(expect["icon"].shape), expect["icon"])


@pytest.mark.parametrize("case", [
    "private value does not fit its dictionary VR (Philips, implicit)",
    "malformed elements inside a sequence",
    "BitsStored smaller than the data",
    "icon sequence with encapsulated pixel data (JPEG-LS)",
])
@pytest.mark.parametrize("options", [("--mode", "near-lossless", "--max-error", "2"),
                                     ("--mode", "lossy", "--bpp", "1")])
def test_awkward_file_in_lossy_modes(case: str, options: tuple[str, ...],
                                     tmp_path: Path) -> None:
    raw, expected_pixels, _ = _case(case)
    source, _, out = _round_trip(tmp_path, raw, *options)
    original, written = _read(source), _read(out)
    decoded = written.pixel_array.astype(np.int64)
    error = np.abs(decoded - expected_pixels.astype(np.int64)).max()
    if options[1] == "near-lossless":
        assert error <= 2
    limit = max((1 << int(written.BitsStored)) - 1, int(expected_pixels.max()))
    assert decoded.min() >= 0 and decoded.max() <= limit
    assert written.LossyImageCompression == "01"
    assert written.SOPInstanceUID != original.SOPInstanceUID
    ratios = _values(written.LossyImageCompressionRatio)
    assert len(ratios) == len(_values(written.LossyImageCompressionMethod)) >= 1


def test_twelve_bit_overshoot_never_wraps_in_the_written_file(tmp_path: Path) -> None:
    """A 12-bit CR at 1..4095 with D=2: no written pixel may reach 4096 (a 12-bit 0)."""
    yy, xx = np.mgrid[0:64, 0:64]
    px = np.clip(2048 + 2047 * np.sin(xx / 3.0) * np.cos(yy / 5.0), 1, 4095).astype(np.uint16)
    px[:8] = 4095
    raw = _part10(_base(px), ImplicitVRLittleEndian, True)
    for options in (("--mode", "near-lossless", "--max-error", "2"),
                    ("--mode", "lossy", "--bpp", "0.5")):
        _, _, out = _round_trip(tmp_path, raw, *options)
        written = _read(out).pixel_array.astype(np.int64)
        assert written.max() <= 4095
        if options[1] == "near-lossless":
            assert np.abs(written - px).max() <= 2


@pytest.mark.parametrize("element, message", [
    ((0x00280004, "CS", b"RGB "), "photometric interpretation RGB"),
    ((0x00280002, "US", b"\x03\x00"), "3 sample"),
])
def test_non_grayscale_is_refused_with_one_line(element: tuple, message: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    px = _pixels()
    elements = [e for e in _base(px) if e[0] != element[0]] + [element]
    source = tmp_path / "colour.dcm"
    source.write_bytes(_part10(elements, ImplicitVRLittleEndian, True))
    assert _run("compress", source, "-o", tmp_path / "x.mdcx") == 2
    err = capsys.readouterr().err
    assert message in err and "colour.dcm" in err and "internal error" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mdcx").exists()


@pytest.mark.parametrize("case", CASES)
def test_awkward_file_transcodes_losslessly(case: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``transcode`` writes explicit VR: implicit elements get a VR (UN where the dictionary's
    does not fit) and keep their bytes; a lossless transcode that would drop bits refuses."""
    raw, expected_pixels, expect = _case(case)
    source = tmp_path / "awkward.dcm"
    source.write_bytes(raw)
    out = tmp_path / "out.dcm"
    code = _run("transcode", source, "-o", out, "--to", "htj2k", "--lossless")
    err = capsys.readouterr().err
    assert "internal error" not in err
    if case == "BitsStored smaller than the data":
        assert code == 2 and "do not fit Bits Stored" in err and not out.exists()
        return
    assert code == 0, err
    original, written = _read(source), _read(out)
    np.testing.assert_array_equal(written.pixel_array, expected_pixels)
    if expect.get("big_endian"):
        return
    before, after = element_bytes(original), element_bytes(written)
    for key, value in before.items():
        if key[0] in _PIXEL_TAGS or key[0] in expect.get("dropped", set()) \
                or key[0] == expect.get("changed_under") or key[-1] & 0xFFFF == 0:
            continue
        assert after.get(key) == value, f"{case}: element {key} changed or lost"
