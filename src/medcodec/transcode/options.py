"""What a transcode writes: the target codec's DICOM transfer syntax, the mode, the result."""

from __future__ import annotations

from dataclasses import dataclass, field

from medcodec import codecs
from medcodec.errors import MedcodecError

#: Codecs of the registry that write DICOM codestreams (``--to``), in the order shown.
TARGET_CODECS = ("htj2k", "jpegls", "jpeg2000", "jpegxl")


def _targets() -> dict[str, tuple[str, str, str]]:
    out = {}
    for name in TARGET_CODECS:
        codec = codecs.get(name)
        assert codec.dicom_syntaxes is not None and codec.dicom_method is not None
        out[name] = (*codec.dicom_syntaxes, codec.dicom_method)
    return out


#: --to name -> (lossless UID, lossy/near-lossless UID, Lossy Image Compression Method term),
#: as the codecs declare them.
TARGETS: dict[str, tuple[str, str, str]] = _targets()
#: HTJ2K Lossless without the RPCL constraints (what --no-rpcl writes).
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = TARGETS["htj2k"][0]


class TranscodeError(MedcodecError):
    """An output failed its check (decoded pixels differ) or the request cannot be met."""


@dataclass(frozen=True)
class TranscodeOptions:
    """What to write: the codec family and lossless, near-lossless (max error) or a ratio."""

    target: str
    max_error: int | None = None
    ratio: float | None = None
    allow_lossy_mg: bool = False
    #: HTJ2K lossless: write the RPCL transfer syntax (.202) rather than plain (.201).
    rpcl: bool = True
    #: "auto" (basic, extended when offsets pass 4 GiB), "basic" or "extended".
    offset_table: str = "auto"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise MedcodecError(f"unknown target {self.target!r}; choose one of "
                                f"{', '.join(TARGETS)}")
        if self.max_error is not None and self.ratio is not None:
            raise MedcodecError("give --max-error or --ratio, not both")
        if self.max_error is not None:
            if self.max_error < 1:
                raise MedcodecError("--max-error must be at least 1 (0 is --lossless)")
            if self.target != "jpegls":
                raise MedcodecError(
                    "--max-error needs --to jpegls: JPEG-LS near-lossless is the only standard "
                    "DICOM codec that bounds every pixel's error (use --ratio for the others)")
        if self.ratio is not None and not self.ratio > 1.0:
            raise MedcodecError("--ratio must be larger than 1")
        if self.offset_table not in ("auto", "basic", "extended"):
            raise MedcodecError("offset table must be auto, basic or extended")

    @property
    def mode(self) -> str:
        if self.max_error is not None:
            return "near-lossless"
        return "lossy" if self.ratio is not None else "lossless"

    @property
    def lossy(self) -> bool:
        return self.mode != "lossless"

    @property
    def transfer_syntax(self) -> str:
        lossless_uid, lossy_uid, _ = TARGETS[self.target]
        if self.lossy:
            return lossy_uid
        if self.target == "htj2k" and not self.rpcl:
            return HTJ2K_LOSSLESS
        return lossless_uid

    @property
    def method(self) -> str:
        return TARGETS[self.target][2]


@dataclass
class TranscodeResult:
    """What one output holds and how close it is to its input (measured on the decoded file)."""

    source: str
    output: str | None
    transfer_syntax: str
    frames: int
    rows: int
    cols: int
    bits_stored: int
    signed: bool
    raw_bytes: int
    coded_bytes: int
    max_error: int
    psnr_db: float | None
    lossy: bool
    seconds: float
    decoder: str
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / max(1, self.coded_bytes)

    def summary(self) -> str:
        kind = f"max error {self.max_error}" + (
            f", PSNR {self.psnr_db:.2f} dB" if self.psnr_db is not None and self.lossy else "")
        return (f"{self.source} -> {self.output or '<memory>'}: {self.frames} frame(s) "
                f"{self.rows}x{self.cols} {'signed' if self.signed else 'unsigned'} "
                f"{self.bits_stored}-bit, TS {self.transfer_syntax}, {self.coded_bytes} bytes, "
                f"ratio {self.ratio:.2f}:1, {kind} (checked by {self.decoder})")
