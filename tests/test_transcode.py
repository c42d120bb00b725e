"""medcodec transcode: standard compressed DICOM out, checked by decoding it again.

Synthetic data cover every bit depth and signedness through every transfer syntax (the bug
class that hit OpenJPH and CharLS); real files from ../shared/data are decoded by pydicom and,
where python-gdcm is installed, by GDCM, and checked with dciodvfy where dicom3tools is.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_fragments, parse_basic_offsets
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medcodec.errors import MedcodecError, OutputError, UnsupportedError
from medcodec.transcode import (
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    TARGETS,
    TranscodeError,
    TranscodeOptions,
    describe_j2k,
    transcode,
    transcode_dataset,
)

DEPTHS = [(8, False), (8, True), (12, False), (12, True), (13, True), (14, False), (16, False),
          (16, True)]


def synthetic(bits: int, signed: bool, frames: int = 2, shape: tuple[int, int] = (40, 48),
              extremes: bool = True, seed: int = 0) -> np.ndarray:
    """Smooth ramps plus noise over the full range of ``bits`` (the ends included)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    low, high = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    base = (np.sin(xx / 7.0) + np.cos(yy / 11.0) + 2) / 4
    out = np.empty((frames, *shape), dtype=np.int64)
    for f in range(frames):
        noisy = base * (high - low) + low + rng.normal(0, (high - low) / 400, shape)
        out[f] = np.clip(np.round(noisy), low, high)
    if extremes:
        out[0, 0, 0], out[0, 0, 1] = low, high
    else:  # keep away from the ends (JPEG-LS signed near-lossless would wrap there)
        out = np.clip(out, low + 64, high - 64)
    return out


def make_dataset(pixels: np.ndarray, bits: int, signed: bool, modality: str = "CT",
                 multiframe: bool = True) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientName, ds.PatientID = "Synthetic^Test", "SYN1"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.LossyImageCompression = "00"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    allocated = 8 if bits <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if multiframe:
        ds.NumberOfFrames = pixels.shape[0]
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}").newbyteorder("<")
    ds.PixelData = pixels.astype(dtype).tobytes()
    ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
    return ds


def read_back(blob: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(blob))


def frames_of(ds: Dataset) -> list[bytes]:
    """The fragments after the (basic offset table) item: one per frame."""
    return list(generate_fragments(ds.PixelData))[1:]


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize(("bits", "signed"), DEPTHS)
def test_lossless_is_exact_for_every_depth_and_sign(target: str, bits: int, signed: bool) -> None:
    pixels = synthetic(bits, signed)
    ds = make_dataset(pixels, bits, signed)
    before = {elem.tag: elem.value for elem in ds if elem.tag != 0x7FE00010}
    blob, result = transcode_dataset(ds, TranscodeOptions(target))
    assert result.max_error == 0 and not result.lossy
    out = read_back(blob)
    assert out.file_meta.TransferSyntaxUID == TARGETS[target][0]
    after = {elem.tag: elem.value for elem in out if elem.tag != 0x7FE00010}
    assert after == before  # every tag and UID kept
    fragments = frames_of(out)
    assert len(fragments) == 2  # one fragment per frame
    assert len(parse_basic_offsets(out.PixelData)) == 2
    if target == "jpegxl":  # pydicom has no JPEG XL decoder yet: libjxl via imagecodecs
        import imagecodecs

        decoded = np.stack([imagecodecs.jpegxl_decode(f) for f in fragments]).astype(np.int64)
        if signed:
            decoded = np.where(decoded >= 1 << (bits - 1), decoded - (1 << bits), decoded)
    else:
        decoded = np.asarray(out.pixel_array).astype(np.int64)
    np.testing.assert_array_equal(decoded, pixels)
    if target in ("htj2k", "jpeg2000"):
        info = describe_j2k(fragments[0])
        assert (info.precision, info.signed, info.reversible) == (bits, signed, True)
    if target == "htj2k":
        assert info.high_throughput and info.progression == "RPCL" and info.tlm
        assert info.tile_parts == info.levels + 1  # one tile-part per resolution
        assert max(info.rows, info.cols) / 2**info.levels <= 64


def test_htj2k_rpcl_gets_enough_levels_for_a_64_pixel_base() -> None:
    pixels = synthetic(12, False, frames=1, shape=(70, 4100))
    ds = make_dataset(pixels, 12, False)
    blob, _ = transcode_dataset(ds, TranscodeOptions("htj2k"))
    info = describe_j2k(frames_of(read_back(blob))[0])
    assert 4100 / 2**info.levels <= 64 and info.progression == "RPCL"


def test_plain_htj2k_lossless_uid_on_request() -> None:
    ds = make_dataset(synthetic(12, False), 12, False)
    blob, result = transcode_dataset(ds, TranscodeOptions("htj2k", rpcl=False))
    assert result.transfer_syntax == HTJ2K_LOSSLESS != HTJ2K_LOSSLESS_RPCL
    assert read_back(blob).file_meta.TransferSyntaxUID == HTJ2K_LOSSLESS


def test_jpeg2000_frames_are_raw_codestreams_not_jp2() -> None:
    ds = make_dataset(synthetic(12, True), 12, True)
    blob, _ = transcode_dataset(ds, TranscodeOptions("jpeg2000"))
    for fragment in frames_of(read_back(blob)):
        assert fragment[:4] == b"\xff\x4f\xff\x51"
    with pytest.raises(TranscodeError, match="JP2"):
        describe_j2k(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\0" * 40)


@pytest.mark.parametrize("signed", [False, True])
def test_near_lossless_jpegls_bounds_the_error_and_marks_lossy(signed: bool) -> None:
    pixels = synthetic(12, signed, extremes=False)
    ds = make_dataset(pixels, 12, signed)
    ds.LossyImageCompressionRatio = "3.5"  # an earlier lossy step's ratio must survive
    old_uid = ds.SOPInstanceUID
    blob, result = transcode_dataset(ds, TranscodeOptions("jpegls", max_error=3))
    out = read_back(blob)
    decoded = np.asarray(out.pixel_array).astype(np.int64)
    error = np.abs(decoded - pixels)
    assert 0 < error.max() <= 3 and result.max_error == int(error.max())
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.81"
    assert out.LossyImageCompression == "01"
    assert str(out.LossyImageCompressionRatio[0]) == "3.5"
    assert len(out.LossyImageCompressionRatio) == 2
    assert out.LossyImageCompressionMethod == "ISO_14495_1"
    assert out.ImageType[0] == "DERIVED"
    assert out.SOPInstanceUID != old_uid
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    source = out.SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == old_uid
    assert source.PurposeOfReferenceCodeSequence[0].CodeValue == "121320"


@pytest.mark.parametrize(("target", "uid", "method"), [
    ("htj2k", "1.2.840.10008.1.2.4.203", "ISO_15444_15"),
    ("jpeg2000", "1.2.840.10008.1.2.4.91", "ISO_15444_1"),
    ("jpegxl", "1.2.840.10008.1.2.4.112", "ISO_18181_1"),
    ("jpegls", "1.2.840.10008.1.2.4.81", "ISO_14495_1"),
])
def test_ratio_target_is_met_and_recorded(target: str, uid: str, method: str) -> None:
    pixels = synthetic(12, False, frames=1, shape=(96, 96))
    ds = make_dataset(pixels, 12, False)
    blob, result = transcode_dataset(ds, TranscodeOptions(target, ratio=8))
    assert 8 * 0.98 <= result.ratio <= 8 * 1.6, result.ratio
    assert result.psnr_db is not None and result.psnr_db > 35
    out = read_back(blob)
    assert out.file_meta.TransferSyntaxUID == uid
    assert out.LossyImageCompressionMethod == method
    assert float(out.LossyImageCompressionRatio) == pytest.approx(result.ratio, rel=1e-3)


def test_signed_htj2k_lossy_keeps_the_sign() -> None:
    pixels = synthetic(16, True, frames=1, shape=(64, 64))
    ds = make_dataset(pixels, 16, True)
    blob, result = transcode_dataset(ds, TranscodeOptions("htj2k", ratio=6))
    decoded = np.asarray(read_back(blob).pixel_array).astype(np.int64)
    assert np.abs(decoded - pixels).max() == result.max_error < 4000  # no wrap-around


def test_mammography_is_never_lossy_unless_allowed() -> None:
    pixels = synthetic(12, False, extremes=False)
    with pytest.raises(TranscodeError, match="mammography"):
        transcode_dataset(make_dataset(pixels, 12, False, "MG"),
                          TranscodeOptions("jpegls", max_error=1))
    transcode_dataset(make_dataset(pixels, 12, False, "MG"), TranscodeOptions("jpegls"))
    _, result = transcode_dataset(make_dataset(pixels, 12, False, "MG"),
                                  TranscodeOptions("jpegls", max_error=1, allow_lossy_mg=True))
    assert result.lossy


def test_requests_that_cannot_be_met_fail_clearly() -> None:
    with pytest.raises(MedcodecError, match="jpegls"):
        TranscodeOptions("htj2k", max_error=2)
    with pytest.raises(MedcodecError, match="unknown target"):
        TranscodeOptions("webp")
    with pytest.raises(UnsupportedError, match="signed"):
        transcode_dataset(make_dataset(synthetic(12, True), 12, True),
                          TranscodeOptions("jpegxl", ratio=5))
    with pytest.raises(TranscodeError, match="wrap"):  # the ends of the signed range
        transcode_dataset(make_dataset(synthetic(12, True), 12, True),
                          TranscodeOptions("jpegls", max_error=2))
    too_wide = make_dataset(synthetic(12, False), 12, False)
    too_wide.BitsStored, too_wide.HighBit = 10, 9
    with pytest.raises(UnsupportedError, match="Bits Stored"):
        transcode_dataset(too_wide, TranscodeOptions("htj2k"))


def test_extended_offset_table() -> None:
    pixels = synthetic(12, False, frames=3)
    blob, _ = transcode_dataset(make_dataset(pixels, 12, False),
                                TranscodeOptions("htj2k", offset_table="extended"))
    out = read_back(blob)
    assert "ExtendedOffsetTable" in out and "ExtendedOffsetTableLengths" in out
    assert parse_basic_offsets(out.PixelData) == []
    np.testing.assert_array_equal(np.asarray(out.pixel_array), pixels)


def test_files_folders_and_containers(tmp_path: Path) -> None:
    import medcodec

    src = tmp_path / "in" / "series"
    src.mkdir(parents=True)
    volume = synthetic(12, True, frames=3, extremes=False)
    study, series = generate_uid(), generate_uid()
    for index in range(3):
        ds = make_dataset(volume[index : index + 1], 12, True, multiframe=False)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.ImagePositionPatient = [0, 0, float(index)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.save_as(src / f"slice{index}.dcm", enforce_file_format=True)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    results = transcode([tmp_path / "in"], out, TranscodeOptions("htj2k"))
    assert sorted(p.name for p in (out / "series").iterdir()) == [
        "slice0.dcm", "slice1.dcm", "slice2.dcm"]
    assert all(r.max_error == 0 for r in results)
    with pytest.raises(OutputError, match="exists"):
        transcode([tmp_path / "in"], out, TranscodeOptions("htj2k"))

    container = tmp_path / "vol.mdcx"
    container.write_bytes(medcodec.compress(medcodec.read(src)))
    results = transcode([container], tmp_path / "from_container", TranscodeOptions("jpeg2000"))
    assert len(results) == 3
    back = medcodec.read(tmp_path / "from_container")
    np.testing.assert_array_equal(back.pixels, volume)
    original = pydicom.dcmread(src / "slice1.dcm")
    again = pydicom.dcmread(tmp_path / "from_container" / "slice1.dcm")
    assert again.SOPInstanceUID == original.SOPInstanceUID  # lossless keeps UIDs
    assert again.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"

    single = tmp_path / "one.dcm"
    transcode([src / "slice0.dcm"], single, TranscodeOptions("jpegls"))
    assert pydicom.dcmread(single).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"


def test_cli_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medcodec.cli.ecosystem import add_parsers

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    src = tmp_path / "a.dcm"
    make_dataset(synthetic(12, False), 12, False).save_as(src, enforce_file_format=True)
    args = parser.parse_args(["transcode", str(src), "-o", str(tmp_path / "b.dcm"),
                              "--to", "jpegls", "--max-error", "2"])
    args.quiet = True
    assert args.func(args) == 0
    assert "max error 2" in capsys.readouterr().out
    assert pydicom.dcmread(tmp_path / "b.dcm").LossyImageCompression == "01"


# --------------------------------------------------------------------------------------------
# Real files

REAL_FILES = [
    "dcm_qa_ct/In/Philips/S21570/S2010/I10",  # CT 12-bit unsigned
    "pydicom-data/explicit_VR-UN.dcm",  # CT 16-bit signed, JPEG 2000 source
    "pydicom-data/693_UNCR.dcm",  # CT 14-bit signed
    "pydicom-data/emri_small.dcm",  # MR multi-frame
    "highdicom/data/test_files/dx_image.dcm",  # DX 8-bit
]


def _real(shared_data: Path, rel: str) -> Path:
    path = shared_data / rel
    if not path.is_file():
        pytest.skip(f"{rel} is not in ../shared/data")
    return path


def _gdcm_pixels(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read(), f"GDCM cannot read {path}"
    buffer = reader.GetImage().GetBuffer()
    data = buffer.encode("utf-8", "surrogateescape")  # python-gdcm hands bytes out as str
    return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)


def _sign_extend(values: np.ndarray, bits: int) -> np.ndarray:
    """GDCM hands signed samples out as their Bits Stored bit pattern."""
    shift = 64 - bits
    return (values.astype(np.int64) << shift) >> shift


def validator_copy(path: Path, scratch: Path) -> Path:
    """dicom3tools 2022 predates HTJ2K and JPEG XL: relabel those (encapsulated) as JPEG 2000.

    dciodvfy checks attributes and encoding, not codestreams, so the copy is checked for
    everything except the transfer syntax UID itself.
    """
    ds = pydicom.dcmread(path)
    uid = str(ds.file_meta.TransferSyntaxUID)
    if not uid.startswith(("1.2.840.10008.1.2.4.20", "1.2.840.10008.1.2.4.11")):
        return path
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds.save_as(scratch, enforce_file_format=True)
    return scratch


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", REAL_FILES)
def test_real_files_lossless_through_every_target(shared_data: Path, rel: str,
                                                  tmp_path: Path) -> None:
    path = _real(shared_data, rel)
    original = pydicom.dcmread(path)
    reference = np.asarray(original.pixel_array).astype(np.int64)
    for target in ("htj2k", "jpegls", "jpeg2000", "jpegxl"):
        out = tmp_path / f"{target}.dcm"
        [result] = transcode([path], out, TranscodeOptions(target))
        assert result.max_error == 0
        again = pydicom.dcmread(out)
        assert again.SOPInstanceUID == original.SOPInstanceUID
        if target == "jpegxl":
            continue
        np.testing.assert_array_equal(np.asarray(again.pixel_array).astype(np.int64), reference)
        dtype = np.dtype(f"{'i' if result.signed else 'u'}{int(again.BitsAllocated) // 8}")
        gdcm_values = _gdcm_pixels(out, (result.frames, result.rows, result.cols), dtype)
        if result.signed:
            gdcm_values = _sign_extend(gdcm_values, result.bits_stored)
        np.testing.assert_array_equal(gdcm_values.reshape(reference.shape), reference)


@pytest.mark.shared_data
def test_dciodvfy_finds_no_new_error(shared_data: Path, tmp_path: Path) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    path = _real(shared_data, REAL_FILES[0])

    def errors(file: Path) -> set[str]:
        run = subprocess.run(["dciodvfy", "-new", str(file)], capture_output=True, text=True,
                             errors="replace", timeout=60)
        return {line.strip() for line in (run.stdout + run.stderr).splitlines()
                if line.startswith("Error")}

    for target, extra in (("htj2k", {}), ("jpegls", {"max_error": 2}), ("jpeg2000", {}),
                          ("jpegxl", {"ratio": 10})):
        out = tmp_path / f"{target}.dcm"
        transcode([path], out, TranscodeOptions(target, **extra))
        checked = validator_copy(out, tmp_path / f"{target}-as-j2k.dcm")
        assert errors(checked) - errors(path) == set(), target
