"""Non-DICOM formats: exact round trips, geometry and headers kept, clear errors on bad files."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile

import medcodec.io
from medcodec.errors import InputError, OutputError, UnsupportedError
from medcodec.image import MedImage
from medcodec.io.itk import read_itk, write_itk
from medcodec.io.nifti import read_nifti, write_nifti
from medcodec.io.npy import read_npy, write_npy
from medcodec.io.raster import read_raster, write_raster

from .conftest import SHARED_DATA, shared_manifest

SHAPES = [(1, 1), (3, 5), (13, 7), (1, 1, 1), (2, 1, 1), (7, 13, 5)]
DTYPES = ["uint8", "uint16", "int16"]


def _pixels(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Random values over the dtype's whole range, so byte order or sign slips show up."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def _image(shape: tuple[int, ...], dtype: str, **kwargs: object) -> MedImage:
    return MedImage(_pixels(shape, dtype), bits_stored=np.dtype(dtype).itemsize * 8, **kwargs)


def _assert_same_pixels(back: MedImage, image: MedImage) -> None:
    assert back.pixels.dtype == image.pixels.dtype
    np.testing.assert_array_equal(back.pixels, image.pixels)


# --- round trips of small synthetic images --------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".tiff", ".npy"])
def test_round_trip(suffix: str, shape: tuple[int, ...], dtype: str, tmp_path: Path) -> None:
    image = _image(shape, dtype)
    path = tmp_path / f"image{suffix}"
    medcodec.io.write(image, path)
    reader = {".nii": read_nifti, ".nii.gz": read_nifti, ".mha": read_itk, ".mhd": read_itk,
              ".nrrd": read_itk, ".tiff": read_raster, ".npy": read_npy}[suffix]
    back = reader(path)
    _assert_same_pixels(back, image)
    assert back.bits_stored == np.dtype(dtype).itemsize * 8
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # one file, no leftovers


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (13, 7), (1, 4, 9)], ids=str)
def test_png_round_trip(shape: tuple[int, ...], dtype: str, tmp_path: Path) -> None:
    image = _image(shape, dtype)
    write_raster(image, tmp_path / "a.png")
    back = read_raster(tmp_path / "a.png")
    _assert_same_pixels(back, image)
    assert back.bits_stored == (8 if dtype == "uint8" else 16)
    assert back.source_format == "png"


def test_png_refuses_volumes_signed_and_wide_pixels(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="one 2-D image"):
        write_raster(_image((2, 3, 4), "uint8"), tmp_path / "v.png")
    with pytest.raises(OutputError, match="signed"):
        write_raster(_image((3, 4), "int16"), tmp_path / "s.png")
    with pytest.raises(OutputError, match="16 bits"):
        write_raster(_image((3, 4), "uint32"), tmp_path / "w.png")


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint32"])
def test_wider_types_round_trip(dtype: str, tmp_path: Path) -> None:
    image = _image((3, 4, 5), dtype)
    formats = [("a.nii.gz", write_nifti, read_nifti), ("a.nrrd", write_itk, read_itk),
               ("a.tif", write_raster, read_raster), ("a.npy", write_npy, read_npy)]
    for name, write, read in formats:
        write(image, tmp_path / name)
        _assert_same_pixels(read(tmp_path / name), image)


# --- geometry -------------------------------------------------------------------------------------

OBLIQUE = (0.9950041652780258, 0.09983341664682815, 0.0, -0.09983341664682815, 0.9950041652780258,
           0.0)


def _located_volume() -> MedImage:
    """A DICOM-like volume: oblique in-plane orientation, slices along the normal."""
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    positions = np.array([-120.5, 33.25, 7.0]) + np.arange(5)[:, None] * 2.5 * normal
    return _image((5, 13, 7), "int16", pixel_spacing=(0.75, 0.5), slice_thickness=2.5,
                  orientation=OBLIQUE, slice_positions=positions)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_geometry_survives_conversion(suffix: str, tmp_path: Path) -> None:
    image = _located_volume()
    medcodec.io.write(image, tmp_path / f"v{suffix}")
    back = (read_nifti if suffix == ".nii.gz" else read_itk)(tmp_path / f"v{suffix}")
    _assert_same_pixels(back, image)
    tol = 1e-5  # NIfTI stores the affine as float32
    assert back.pixel_spacing == pytest.approx(image.pixel_spacing, rel=tol)
    assert back.slice_thickness == pytest.approx(2.5, rel=tol)
    assert back.orientation == pytest.approx(image.orientation, abs=tol)
    np.testing.assert_allclose(back.slice_positions, image.slice_positions, atol=1e-3)


def test_nifti_geometry_from_affine(tmp_path: Path) -> None:
    """RAS affine -> DICOM LPS: x and y change sign, spacing is (row, column)."""
    affine = np.array([[-0.8, 0, 0, 90.0], [0, 0.6, 0, -126.0], [0, 0, 3.0, -72.0], [0, 0, 0, 1]])
    data = _pixels((7, 5, 3), "int16")  # (x, y, z)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "a.nii")
    image = read_nifti(tmp_path / "a.nii")
    np.testing.assert_array_equal(image.pixels, data.transpose(2, 1, 0))
    assert (image.rows, image.cols, image.n_slices) == (5, 7, 3)
    assert image.pixel_spacing == pytest.approx((0.6, 0.8))
    assert image.slice_thickness == pytest.approx(3.0)
    assert image.orientation == pytest.approx((1, 0, 0, 0, -1, 0))
    np.testing.assert_allclose(image.slice_positions[0], [-90.0, 126.0, -72.0])
    np.testing.assert_allclose(image.slice_positions[2], [-90.0, 126.0, -66.0])
    np.testing.assert_allclose(image.meta["nifti_affine"], affine, rtol=1e-6)
    assert image.source_format == "nifti" and image.modality is None


def test_itk_keeps_spacing_origin_direction_metadata(tmp_path: Path) -> None:
    itk_image = sitk.GetImageFromArray(_pixels((4, 6, 9), "uint16"))
    itk_image.SetSpacing((0.3, 0.7, 1.9))
    itk_image.SetOrigin((-10.5, 20.25, 3.0))
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    itk_image.SetDirection(direction)
    itk_image.SetMetaData("PatientName", "anonymous")
    sitk.WriteImage(itk_image, str(tmp_path / "a.nrrd"))
    image = read_itk(tmp_path / "a.nrrd")
    assert image.pixel_spacing == pytest.approx((0.7, 0.3))
    assert image.slice_thickness == pytest.approx(1.9)
    assert image.orientation == pytest.approx((0, -1, 0, 1, 0, 0))
    np.testing.assert_allclose(image.slice_positions[1], [-10.5, 20.25, 4.9])
    assert image.meta["itk_metadata"]["PatientName"] == "anonymous"
    for suffix in (".nrrd", ".nhdr", ".mha", ".mhd"):
        out = tmp_path / f"b{suffix}"
        medcodec.io.write(image, out)
        back = read_itk(out)
        _assert_same_pixels(back, image)
        for key in ("itk_spacing", "itk_origin", "itk_direction"):
            # NRRD stores spacing x direction as vectors: exact up to the last bit or so
            assert back.meta[key] == pytest.approx(image.meta[key], rel=1e-12, abs=1e-15), key
        assert back.meta["itk_metadata"]["PatientName"] == "anonymous"


def test_itk_2d_and_metaimage_pair(tmp_path: Path) -> None:
    """A 2-D MetaImage header with a separate (compressed) data file is read like any other."""
    pixels = _pixels((5, 8), "int16")
    itk_image = sitk.GetImageFromArray(pixels)
    itk_image.SetSpacing((0.2, 0.4))
    sitk.WriteImage(itk_image, str(tmp_path / "a.mhd"), True)
    assert (tmp_path / "a.zraw").exists()
    image = read_itk(tmp_path / "a.mhd")
    np.testing.assert_array_equal(image.pixels[0], pixels)
    assert image.pixel_spacing == pytest.approx((0.4, 0.2))
    assert image.slice_thickness is None
    write_itk(image, tmp_path / "b.mha")
    assert sitk.ReadImage(str(tmp_path / "b.mha")).GetDimension() == 2


def test_nifti_from_plain_array_has_identity_affine(tmp_path: Path) -> None:
    image = _image((3, 4, 5), "uint16")
    write_nifti(image, tmp_path / "a.nii")
    np.testing.assert_allclose(nib.load(tmp_path / "a.nii").affine, np.eye(4))


# --- NIfTI header fidelity ------------------------------------------------------------------------


def _patched_nifti(path: Path, slope: float, inter: float, dtype: str = "int16") -> bytes:
    """A NIfTI file with a chosen raw scl_slope/scl_inter (nibabel cannot write NaN itself)."""
    affine = np.array([[-1.5, 0, 0, 10], [0, 1.5, 0, -20], [0, 0, 4, 30], [0, 0, 0, 1]])
    image = nib.Nifti1Image(_pixels((6, 5, 4), dtype), affine)
    image.header["descrip"] = b"medcodec test"
    image.header.set_qform(affine, code=1)
    nib.save(image, path)
    raw = bytearray(path.read_bytes())
    raw[112:120] = struct.pack("<ff", slope, inter)
    path.write_bytes(bytes(raw))
    return bytes(raw)


def test_nifti_keeps_header_and_scaling(tmp_path: Path) -> None:
    original = _patched_nifti(tmp_path / "a.nii", 2.0, -1024.0)
    image = read_nifti(tmp_path / "a.nii")
    assert (image.rescale_slope, image.rescale_intercept) == (2.0, -1024.0)
    assert image.attachments["nifti/header"] == original[:348]
    write_nifti(image, tmp_path / "b.nii")
    assert (tmp_path / "b.nii").read_bytes() == original  # header and data byte for byte


@pytest.mark.parametrize("slope", [float("nan"), 0.0])
def test_nifti_nan_or_zero_slope_means_no_scaling(slope: float, tmp_path: Path) -> None:
    original = _patched_nifti(tmp_path / "a.nii", slope, float("nan"))
    image = read_nifti(tmp_path / "a.nii")
    assert (image.rescale_slope, image.rescale_intercept) == (1.0, 0.0)
    write_nifti(image, tmp_path / "b.nii")
    written = (tmp_path / "b.nii").read_bytes()
    # nibabel recomputes an all-NaN scaling as (1, 0); everything else stays.
    assert written[:112] == original[:112] and written[120:] == original[120:]


def test_nifti_2d_keeps_its_shape(tmp_path: Path) -> None:
    data = _pixels((9, 4), "uint8")
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "a.nii.gz")
    image = read_nifti(tmp_path / "a.nii.gz")
    assert image.pixels.shape == (1, 4, 9)
    write_nifti(image, tmp_path / "b.nii.gz")
    assert nib.load(tmp_path / "b.nii.gz").shape == (9, 4)
    assert read_nifti(tmp_path / "b.nii.gz").attachments == image.attachments


def test_nifti_one_slice_of_volume_gets_its_own_position(tmp_path: Path) -> None:
    _patched_nifti(tmp_path / "a.nii", 1.0, 0.0)
    volume = read_nifti(tmp_path / "a.nii")
    part = volume.slice(2)
    write_nifti(part, tmp_path / "b.nii")
    back = read_nifti(tmp_path / "b.nii")
    _assert_same_pixels(back, part)
    np.testing.assert_allclose(back.slice_positions, part.slice_positions, atol=1e-4)


def test_nifti_big_endian(tmp_path: Path) -> None:
    data = _pixels((5, 6, 3), "int16")
    header = nib.Nifti1Header(endianness=">")
    header.set_data_dtype(np.int16)
    nib.save(nib.Nifti1Image(data.astype(">i2"), np.eye(4), header), tmp_path / "a.nii")
    original = (tmp_path / "a.nii").read_bytes()
    image = read_nifti(tmp_path / "a.nii")
    np.testing.assert_array_equal(image.pixels, data.transpose(2, 1, 0))
    write_nifti(image, tmp_path / "b.nii")
    assert (tmp_path / "b.nii").read_bytes() == original


# --- raster specifics -----------------------------------------------------------------------------


def test_tiff_stack_from_other_writers(tmp_path: Path) -> None:
    """Pages written one by one without tifffile's shape metadata still make one volume."""
    stack = _pixels((4, 6, 5), "uint16")
    with tifffile.TiffWriter(tmp_path / "a.tif") as tif:
        for page in stack:
            tif.write(page, photometric="minisblack", metadata=None)
    image = read_raster(tmp_path / "a.tif")
    np.testing.assert_array_equal(image.pixels, stack)
    assert image.source_format == "tiff"


def test_tiff_miniswhite_is_monochrome1(tmp_path: Path) -> None:
    image = _image((3, 4), "uint16", photometric="MONOCHROME1")
    write_raster(image, tmp_path / "a.tiff")
    back = read_raster(tmp_path / "a.tiff")
    assert back.photometric == "MONOCHROME1"
    _assert_same_pixels(back, image)


def test_gray_stored_as_rgb_or_with_opaque_alpha_is_accepted(tmp_path: Path) -> None:
    gray = _pixels((5, 7), "uint8")
    (tmp_path / "rgb.png").write_bytes(imagecodecs.png_encode(np.dstack([gray] * 3)))
    np.testing.assert_array_equal(read_raster(tmp_path / "rgb.png").pixels[0], gray)
    opaque = np.full_like(gray, 255)
    (tmp_path / "la.png").write_bytes(imagecodecs.png_encode(np.dstack([gray, opaque])))
    np.testing.assert_array_equal(read_raster(tmp_path / "la.png").pixels[0], gray)


# --- bad inputs: a clear error naming the file, never a library traceback -------------------------


def _bad_files(tmp: Path) -> dict[str, type[Exception]]:
    gz = tmp / "truncated.nii.gz"
    nib.save(nib.Nifti1Image(_pixels((20, 20, 20), "int16"), np.eye(4)), gz)
    gz.write_bytes(gz.read_bytes()[:300])
    (tmp / "text.nii").write_text("this is not a NIfTI file\n" * 20)
    np.save(tmp / "float.npy", np.zeros((3, 4), np.float32))
    np.save(tmp / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp / "pickle.npy").write_bytes(pickle.dumps({"not": "an array"}))
    np.save(tmp / "fourd.npy", np.zeros((2, 2, 2, 2), np.uint8))
    rgb = _pixels((4, 5, 3), "uint8")
    (tmp / "rgb.png").write_bytes(imagecodecs.png_encode(rgb))
    (tmp / "garbage.png").write_bytes(b"\x89PNG not really")
    tifffile.imwrite(tmp / "rgb.tif", rgb, photometric="rgb")
    (tmp / "garbage.tif").write_bytes(b"II*\x00garbage")
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), np.eye(4)), tmp / "float.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5, 2), np.int16), np.eye(4)), tmp / "fourd.nii")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 3), np.uint8), isVector=True),
                    str(tmp / "vector.mha"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.float32)), str(tmp / "float.nrrd"))
    mha = tmp / "truncated.mha"
    sitk.WriteImage(sitk.GetImageFromArray(_pixels((8, 9, 10), "int16")), str(mha))
    mha.write_bytes(mha.read_bytes()[:-100])
    (tmp / "text.nrrd").write_text("hello\n")
    (tmp / "empty.npy").write_bytes(b"")
    return {
        "truncated.nii.gz": InputError, "text.nii": InputError, "float.npy": UnsupportedError,
        "object.npy": InputError, "pickle.npy": InputError, "fourd.npy": UnsupportedError,
        "rgb.png": UnsupportedError, "garbage.png": InputError, "rgb.tif": UnsupportedError,
        "garbage.tif": InputError, "float.nii.gz": UnsupportedError,
        "fourd.nii": UnsupportedError, "vector.mha": UnsupportedError,
        "float.nrrd": UnsupportedError, "truncated.mha": InputError, "text.nrrd": InputError,
        "empty.npy": InputError,
    }


_READERS = {".nii": read_nifti, ".gz": read_nifti, ".npy": read_npy, ".png": read_raster,
            ".tif": read_raster, ".mha": read_itk, ".nrrd": read_itk}


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    for name, error in _bad_files(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(error) as info:
            _READERS[path.suffix](path)
        assert name in str(info.value), str(info.value)
        assert "\n" not in str(info.value), str(info.value)
    with pytest.raises(UnsupportedError, match="colour"):
        read_raster(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="pickle"):
        read_npy(tmp_path / "object.npy")


def test_truncated_gzip_member_is_input_error(tmp_path: Path) -> None:
    """Header intact, compressed pixel stream cut short."""
    path = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(_pixels((30, 30, 30), "int16"), np.eye(4)), path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw)[: len(raw) // 3])
    with pytest.raises(InputError, match="a.nii.gz"):
        read_nifti(path)


# --- real files from ../shared/data ---------------------------------------------------------------

_REAL = [row for row in shared_manifest()
         if row["relpath"].endswith((".nii", ".nii.gz", ".nrrd", ".mhd", ".mha"))]


def _manifest_sha1(pixels: np.ndarray) -> str:
    """The manifest's sha1_pixels: SHA-1 of str(shape) then the values as little-endian int64,
    over the array as (slices, rows, cols) (worked out against the manifest's rows)."""
    return hashlib.sha1(str(pixels.shape).encode() + pixels.astype("<i8").tobytes()).hexdigest()


@pytest.mark.shared_data
@pytest.mark.parametrize("row", _REAL or [None], ids=lambda r: r["relpath"] if r else "none")
def test_real_files_read_and_round_trip(row: dict[str, str] | None, tmp_path: Path) -> None:
    if row is None or not (SHARED_DATA / row["relpath"]).is_file():
        pytest.skip("../shared/data is not available")
    path = SHARED_DATA / row["relpath"]
    nifti = row["relpath"].endswith((".nii", ".nii.gz"))
    image = (read_nifti if nifti else read_itk)(path)
    assert image.pixels.dtype.kind in "ui"
    assert image.signed == row["pixel_representation"].startswith("1")
    assert (image.n_slices, image.rows, image.cols) == (
        int(row["frames_or_slices"]), int(row["rows"]), int(row["cols"]))
    assert _manifest_sha1(image.pixels) == row["sha1_pixels"]
    assert image.pixel_spacing is not None and min(image.pixel_spacing) > 0

    suffix = ".nii.gz" if row["relpath"].endswith(".gz") else Path(row["relpath"]).suffix
    out = tmp_path / f"copy{suffix}"
    medcodec.io.write(image, out)
    back = (read_nifti if nifti else read_itk)(out)
    _assert_same_pixels(back, image)
    if nifti:
        before, after = image.attachments["nifti/header"], back.attachments["nifti/header"]
        assert before[:108] == after[:108] and before[112:] == after[112:]  # vox_offset may move
        assert back.meta["nifti_affine"] == image.meta["nifti_affine"]
    else:
        for key in ("itk_spacing", "itk_origin", "itk_direction"):
            assert back.meta[key] == image.meta[key]
        kept = {k: v for k, v in image.meta["itk_metadata"].items() if not k.startswith("ITK_")}
        assert {k: back.meta["itk_metadata"].get(k) for k in kept} == kept
