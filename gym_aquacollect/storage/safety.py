"""Opening a dataset that someone else made: nothing outside its directory is read, nothing hangs.

Contents:
    * :func:`read_regular_file` - the bytes of a regular file (a FIFO, device or directory is refused
      without blocking; a size limit bounds what is read).
    * :func:`shard_file` - the path of a shard a manifest lists, after checking the entry is a plain
      relative name under the dataset's ``shards/`` folder and the file is a regular file there (no
      absolute paths, no ``..``, no symlink that leaves the folder).
    * :func:`check_contained` - refuse an HDF5 file whose bytes may come from elsewhere: external raw
      storage, virtual datasets, external links, soft links (and any link class but hard links).
    * :func:`check_column_shape` - refuse a dataset whose shape is absurd before anything is allocated.

Every refusal is a :class:`~gym_aquacollect.storage.manifest.DatasetFormatError` that names the file.

Example:
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.mkfifo(os.path.join(root, "x.json"))
    >>> try:
    ...     read_regular_file(os.path.join(root, "x.json"))
    ... except DatasetFormatError as e:
    ...     print("refused:", "not a regular file" in str(e))
    refused: True
    >>> try:
    ...     shard_file(root, "../outside.h5")
    ... except DatasetFormatError as e:
    ...     print("refused:", "under shards/" in str(e))
    refused: True
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import h5py

from gym_aquacollect.storage.manifest import SHARD_DIR, DatasetFormatError

__all__ = ["read_regular_file", "dataset_file", "shard_file", "check_contained", "check_column_shape", "MAX_JSON_BYTES",
           "MAX_ROW_BYTES", "MAX_EXPANSION"]

#: The largest JSON file (metadata, manifest) a dataset may have.
MAX_JSON_BYTES = 256 << 20
#: The largest single row (one observation, one info value) a column may declare.
MAX_ROW_BYTES = 1 << 30
#: A column's declared bytes may exceed the bytes it occupies in the file by at most this factor (gzip's
#: best case is ~1000x) or :data:`_FLOOR_BYTES`, whichever is larger.
MAX_EXPANSION = 4096
_FLOOR_BYTES = 1 << 30


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file ``path``; anything else (FIFO, device, directory) or a file over
    ``max_bytes`` raises :class:`DatasetFormatError` without blocking. ``FileNotFoundError`` passes through.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DatasetFormatError(f"{path}: is {_kind(st.st_mode)}, not a regular file; a dataset only holds "
                                     "regular files: remove it")
        if st.st_size > max_bytes:
            raise DatasetFormatError(f"{path}: {st.st_size} bytes is more than the {max_bytes} a dataset's JSON "
                                     "file may have; the file is corrupt or not part of a dataset")
        chunks, left = [], st.st_size + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise DatasetFormatError(f"{path}: grew past {max_bytes} bytes while being read")
        return data
    finally:
        os.close(fd)


def check_regular(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` (following links), refusing anything but a regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: {what} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise DatasetFormatError(f"{path}: {what} is {_kind(st.st_mode)}, not a regular file; refusing to open it")
    return st


def dataset_file(root: str | os.PathLike, rel: str | os.PathLike, what: str = "file") -> Path:
    """``root / rel``, checked: symlinks resolved it stays inside ``root``, and it is a regular file (a FIFO
    or device would hang or never end). For formats whose files a dataset names (LeRobot, Minari)."""
    root = Path(root)
    full = root / rel
    real, real_root = os.path.realpath(full), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise DatasetFormatError(f"{full}: {what} leaves the dataset directory (to {real}); refusing to read "
                                 "outside the dataset")
    check_regular(full, what)
    return full


def shard_file(root: str | os.PathLike, rel: Any) -> Path:
    """The checked path of the shard ``rel`` (as a manifest lists it) in the dataset at ``root``.

    ``rel`` must be ``shards/<name>``: relative, without ``..``, and the file, symlinks resolved, must be a
    regular file inside the dataset's ``shards/`` folder.
    """
    root = Path(root)
    if not isinstance(rel, str) or not rel or "\x00" in rel or "\\" in rel:
        raise DatasetFormatError(f"{root}: a manifest lists the shard {rel!r}, which is not a file name")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or len(p.parts) != 2 or p.parts[0] != SHARD_DIR:
        raise DatasetFormatError(
            f"{root}: a manifest lists the shard {rel!r}; shard entries must be plain names under {SHARD_DIR}/ "
            "(no absolute paths, no '..'): refusing to read outside the dataset")
    full = root / rel
    shard_dir = os.path.realpath(root / SHARD_DIR)
    real = os.path.realpath(full)
    if os.path.dirname(real) != shard_dir:
        raise DatasetFormatError(
            f"{full}: is a symlink that leaves the dataset's {SHARD_DIR}/ folder (to {real}); refusing to read "
            "outside the dataset")
    check_regular(full, "shard file (listed in a manifest)")
    return full


def check_contained(f: Any, path: str | os.PathLike) -> None:
    """Refuse the open ``h5py.File`` ``f`` if any of its bytes may come from another file.

    External raw storage, virtual datasets, external links, soft links and user-defined links are refused
    (gym_aquacollect never writes them): :class:`DatasetFormatError` names the file and the object.
    """
    import h5py

    bad: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            bad.append(f"/{name} is an external link to {link.filename}:{link.path}")
        elif isinstance(link, h5py.SoftLink):
            bad.append(f"/{name} is a soft link to {link.path}")
        elif not isinstance(link, h5py.HardLink):
            bad.append(f"/{name} is a link of an unsupported class")
        else:
            obj = f.get(name, getlink=False)
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    bad.append(f"/{name} is a virtual dataset (its data live in other files)")
                elif obj.external:
                    bad.append(f"/{name} stores its data in external file(s) {[e[0] for e in obj.external][:3]}")
        return None if len(bad) < 3 else True  # stop early: a few examples suffice

    try:
        f.visititems_links(visit)
    except DatasetFormatError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise DatasetFormatError(f"{path}: cannot list the file's objects ({type(e).__name__}: {e})") from None
    if bad:
        raise DatasetFormatError(
            f"{path}: refusing to read it: {'; '.join(bad)}. A dataset must not read other files; rewrite it "
            "without links or external storage (h5py copy) if you trust its source")


def check_column_shape(ds: Any, path: str | os.PathLike, name: str) -> None:
    """Refuse an HDF5 dataset whose declared shape is absurd (a row over :data:`MAX_ROW_BYTES`, or far more
    declared bytes than the file holds for it), before anything is allocated."""
    shape = tuple(int(s) for s in ds.shape or ())
    try:
        itemsize = int(ds.dtype.itemsize) if ds.dtype.kind != "O" else 16
    except (TypeError, ValueError):
        itemsize = 16
    row = itemsize
    for s in shape[1:]:
        row *= s
    if row > MAX_ROW_BYTES:
        raise DatasetFormatError(
            f"{path}: column {name} declares rows of shape {shape[1:]} ({row} bytes each), more than the "
            f"{MAX_ROW_BYTES} bytes allowed: the file is corrupt or hostile")
    total = row * (shape[0] if shape else 1)
    if total > _FLOOR_BYTES and isinstance(ds, h5py.Dataset):  # coded (video) columns decode rows on demand
        try:
            stored = int(ds.id.get_storage_size())
        except Exception:  # noqa: BLE001 - unknown storage: judge by the declared size alone
            stored = 0
        if total > MAX_EXPANSION * max(stored, 1):
            raise DatasetFormatError(
                f"{path}: column {name} declares shape {shape} ({total} bytes) but holds {stored} bytes in the "
                "file: the file is corrupt or hostile")
