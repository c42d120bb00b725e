"""Safe output: never overwrite without permission, never leave a half-written file behind, and
never let a name read from a file choose where something is written."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from medcodec.errors import MedcodecError, OutputError

#: Longest single file name written (most file systems allow 255 bytes).
MAX_NAME_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse an existing output unless ``force``; make sure the parent folder exists."""
    path = Path(path)
    try:
        exists, is_dir = path.exists(), path.is_dir()
        parent = path.parent if str(path.parent) else Path(".")
        parent_ok = parent.is_dir()
    except OSError as exc:
        raise OutputError(f"{path}: cannot check the output ({_why(exc)})") from None
    if exists and not force:
        raise OutputError(f"{path}: output exists (use --force to overwrite)")
    if is_dir:
        raise OutputError(f"{path}: output is a folder, expected a file")
    if not parent_ok:
        raise OutputError(f"{path}: folder {parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary name keeps the final suffix(es) so format-sniffing writers (nibabel, SimpleITK)
    pick the right format. An operating-system error (no permission, a read-only or special file
    system, a full disk) becomes an OutputError naming ``path``; nothing is left behind.
    """
    final = check_writable(path, force)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".gz") else final.suffix
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".part" + suffix,
                                        dir=final.parent if str(final.parent) else ".")
    except OSError as exc:
        raise OutputError(f"{final}: cannot write there ({_why(exc)})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
        yield tmp
        if final.exists() and not force:  # appeared while we were writing
            raise OutputError(f"{final}: output exists (use --force to overwrite)")
        os.replace(tmp, final)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({_why(exc)})") from None
    except MedcodecError as exc:
        if str(tmp) in str(exc):  # a writer named its temporary file: name the real one
            raise type(exc)(str(exc).replace(str(tmp), str(final))) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, force: bool = False) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)


def plain_name_problem(name: object) -> str | None:
    """Why ``name`` (read from a file) is not a plain file name, or None when it is one.

    A plain name is a non-empty string with no folder separators, no ``.``/``..``, no control
    characters, no leading dot or drive, at most MAX_NAME_BYTES bytes of UTF-8.
    """
    if not isinstance(name, str) or not name:
        return "it is empty or not text"
    if "/" in name or "\\" in name:
        return "it contains a folder separator"
    if name in (".", "..") or name.startswith("."):
        return "it starts with a dot"
    if _CONTROL.search(name):
        return "it contains control characters"
    if ":" in name:
        return "it contains a drive or stream separator (':')"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid text"
    if size > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    return None


def child_path(folder: str | os.PathLike[str], name: object, what: str = "name") -> Path:
    """``folder / name`` for a ``name`` read from a file: refused unless it is a plain name."""
    problem = plain_name_problem(name)
    if problem is not None:
        raise OutputError(f"{folder}: refusing the {what} {str(name)[:80]!r} from the input as an "
                          f"output file name: {problem}")
    return Path(folder) / str(name)


def inside(root: str | os.PathLike[str], relative: str) -> Path | None:
    """``root / relative`` when ``relative`` (read from a file) is a relative path that stays
    inside ``root`` (no absolute path, no ``..``, no symbolic-link escape); else None."""
    if not relative or "\\" in relative or _CONTROL.search(relative):
        return None
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or any(
            p in (".", "..") or ":" in p for p in parts):
        return None
    base = Path(root)
    target = base.joinpath(*parts)
    try:
        resolved_root = base.resolve()
        if resolved_root != target.resolve() and resolved_root not in target.resolve().parents:
            return None
    except (OSError, RuntimeError):
        return None
    return target
