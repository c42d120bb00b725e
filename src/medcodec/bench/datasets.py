"""Dataset adapters: find the scans of the public CT collections as users download them.

- LIDC-IDRI (TCIA tree ``LIDC-IDRI-0001/<study>/<series>/*.dcm``): one volume per series, the
  patient is the top folder (or PatientID).
- LUNA16 (``subset*/<seriesuid>.mhd`` + ``annotations.csv``): one volume per ``.mhd``. LUNA16 is a
  subset of LIDC-IDRI, so its patients are LIDC patients: give the LIDC tree too (or its
  SeriesInstanceUID -> patient map) and the split keeps them together.
- MosMed (``studies/CT-*/study_*.nii.gz``): one volume per study file; the patient is the study.
- Anything else: every image found, the patient taken from the DICOM PatientID or the folder.

Volumes are discovered cheaply (paths and a few header tags) and read only when needed, so
pointing the benchmark at a 125 GB archive does not load it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medcodec.errors import InputError
from medcodec.image import MedImage


@dataclass
class VolumeRef:
    """A volume found on disk, not yet read."""

    id: str
    patient: str
    collection: str
    paths: list[Path]
    series_uid: str = ""
    annotations: list[dict[str, str]] = field(default_factory=list)
    #: The collection's modality, for files that do not say (LUNA16 .mhd, MosMed NIfTI: CT).
    modality: str = ""

    def load(self) -> MedImage:
        from dataclasses import replace

        from medcodec.io import read_all

        images = list(read_all(self.paths))
        if len(images) != 1:
            raise InputError(f"{self.id}: expected one volume, found {len(images)}")
        if self.modality and not images[0].modality:
            return replace(images[0], modality=self.modality)
        return images[0]


def _files(root: Path) -> Iterator[Path]:
    from medcodec.io import walk_files

    return walk_files(root, skip=(".", "_"))  # _provenance folders hold licences, not images


def _dicom_volumes(root: Path, collection: str, patient_from_path: bool) -> list[VolumeRef]:
    from medcodec.io.dicom import looks_like_dicom, series_facts

    by_series: dict[str, list[Path]] = defaultdict(list)
    patients: dict[str, str] = {}
    for path in _files(root):
        if not looks_like_dicom(path):
            continue
        facts = series_facts(path)
        series, patient = (facts.series_uid, facts.patient_id) if facts else ("", "")
        key = series or str(path.parent)
        by_series[key].append(path)
        if patient_from_path:
            rel = path.relative_to(root).parts
            patient = rel[0] if len(rel) > 1 else patient
        patients.setdefault(key, patient or str(path.parent.name))
    out = []
    for series, paths in sorted(by_series.items(), key=lambda kv: str(kv[1][0])):
        out.append(VolumeRef(id=f"{collection}:{series}", patient=patients[series],
                             collection=collection, paths=sorted(paths), series_uid=series))
    return out


def find_lidc(root: Path) -> list[VolumeRef]:
    return _dicom_volumes(root, "LIDC-IDRI", patient_from_path=True)


def find_luna16(root: Path, series_to_patient: dict[str, str] | None = None) -> list[VolumeRef]:
    annotations: dict[str, list[dict[str, str]]] = defaultdict(list)
    ann_file = root / "annotations.csv"
    if ann_file.is_file():
        with open(ann_file, newline="") as fh:
            for row in csv.DictReader(fh):
                annotations[row.get("seriesuid", "")].append(row)
    out = []
    for mhd in sorted(root.glob("subset*/*.mhd")):
        uid = mhd.stem
        patient = (series_to_patient or {}).get(uid, f"LUNA16:{uid}")
        out.append(VolumeRef(id=f"LUNA16:{uid}", patient=patient, collection="LUNA16",
                             paths=[mhd], series_uid=uid, annotations=annotations.get(uid, []),
                             modality="CT"))
    return out


def find_mosmed(root: Path) -> list[VolumeRef]:
    studies = root / "studies" if (root / "studies").is_dir() else root
    out = []
    for path in sorted(studies.glob("CT-*/study_*.nii*")):
        study = re.sub(r"\.nii(\.gz)?$", "", path.name)
        out.append(VolumeRef(id=f"MosMed:{path.parent.name}/{study}", patient=f"MosMed:{study}",
                             collection="MosMed", paths=[path], modality="CT"))
    return out


def find_generic(root: Path) -> list[VolumeRef]:
    from medcodec.io import detect_format

    if root.is_file():
        return [VolumeRef(id=str(root), patient=str(root.parent), collection="files",
                          paths=[root])]
    out = _dicom_volumes(root, "dicom", patient_from_path=False)
    for path in _files(root):
        fmt = detect_format(path)
        if fmt not in (None, "dicom") and not path.name.lower().endswith((".raw", ".zraw")):
            out.append(VolumeRef(id=str(path.relative_to(root)), patient=str(path.parent),
                                 collection="files", paths=[path]))
    return out


def detect_collection(root: Path) -> str:
    """Which layout a folder has: lidc, luna16, mosmed or generic."""
    if root.is_dir():
        if any(root.glob("subset*/*.mhd")):
            return "luna16"
        if any(root.glob("studies/CT-*/study_*.nii*")) or any(root.glob("CT-*/study_*.nii*")):
            return "mosmed"
        if any(p.is_dir() and p.name.upper().startswith("LIDC-IDRI-") for p in root.iterdir()):
            return "lidc"
    return "generic"


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[VolumeRef]:
    """Every volume under ``paths``, each folder read with the adapter its layout calls for.

    When both an LIDC-IDRI tree and LUNA16 are given, LUNA16 volumes get their LIDC patient IDs
    (matched by SeriesInstanceUID), so a patient split never puts one patient on both sides.
    """
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
    found: list[VolumeRef] = []
    luna_roots = []
    for root in roots:
        kind = detect_collection(root)
        if kind == "luna16":
            luna_roots.append(root)
        elif kind == "lidc":
            found.extend(find_lidc(root))
        elif kind == "mosmed":
            found.extend(find_mosmed(root))
        else:
            found.extend(find_generic(root))
    series_to_patient = {v.series_uid: v.patient for v in found if v.collection == "LIDC-IDRI"}
    for root in luna_roots:
        found.extend(find_luna16(root, series_to_patient))
    return found


def _unit_hash(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_patient(volumes: Sequence[VolumeRef], fractions: Sequence[float] = (0.8, 0.2),
                     seed: int = 0) -> list[list[VolumeRef]]:
    """Split volumes into groups by patient (never one patient in two groups).

    Assignment hashes the patient ID with the seed, so it is stable when volumes are added or
    the input order changes.
    """
    total = float(sum(fractions))
    if total <= 0 or any(f < 0 for f in fractions):
        raise ValueError("fractions must be non-negative and not all zero")
    edges = []
    acc = 0.0
    for fraction in fractions:
        acc += fraction / total
        edges.append(acc)
    groups: list[list[VolumeRef]] = [[] for _ in fractions]
    for volume in volumes:
        u = _unit_hash(volume.patient, seed)
        index = next((i for i, edge in enumerate(edges) if u < edge), len(edges) - 1)
        groups[index].append(volume)
    return groups
