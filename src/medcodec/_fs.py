"""Safe output: never overwrite without permission, never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from medcodec.errors import OutputError


def check_writable(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse an existing output unless ``force``; make sure the parent folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path}: output exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputError(f"{path}: output is a folder, expected a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: folder {parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary name keeps the final suffix(es) so format-sniffing writers (nibabel, SimpleITK)
    pick the right format.
    """
    final = check_writable(path, force)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".gz") else final.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".part" + suffix,
                                    dir=final.parent if str(final.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        if final.exists() and not force:  # appeared while we were writing
            raise OutputError(f"{final}: output exists (use --force to overwrite)")
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)
