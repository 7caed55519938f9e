"""The dataset directory: its metadata file, per-writer manifests and atomic file updates.

Contents:
    * :data:`METADATA_FILE`, :data:`FORMAT_NAME`, :data:`FORMAT_VERSION` - the layout constants.
    * :func:`atomic_write_json` - write-then-rename with fsync, so a crash leaves the old or the new file.
    * :func:`init_dataset_dir` - create (or join, after a compatibility check) a dataset directory.
    * :class:`ShardRecord` and :class:`Manifest` - what one writer has committed.
    * :func:`read_dataset_dir` - the metadata plus every writer's committed shards.
    * :func:`file_checksum` - the CRC32 stored for each finished shard.
    * :func:`json_checksum` - the CRC32 each JSON file (metadata, manifests) stores of its own content,
      so corrupt bytes that still parse as JSON are detected too.

A dataset is a directory::

    DIR/aquacollect.json              dataset metadata: spaces, env spec, user metadata, format version
    DIR/manifests/<writer_id>.json    the shards that writer has committed (replaced atomically)
    DIR/shards/<writer_id>-<seq>.h5   immutable once listed in a manifest

A shard becomes part of the dataset only when its manifest entry is written, after the shard file was
closed and fsynced. A crash therefore loses at most the shard being written (the unflushed tail), and
any number of writers (threads or processes) can add to one directory without locks because each owns
its manifest and its shard names.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "METADATA_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DatasetFormatError",
    "atomic_write_json",
    "init_dataset_dir",
    "ShardRecord",
    "Manifest",
    "read_dataset_dir",
    "file_checksum",
    "json_checksum",
    "new_writer_id",
    "is_dataset_dir",
]

METADATA_FILE = "aquacollect.json"
MANIFEST_DIR = "manifests"
SHARD_DIR = "shards"
FORMAT_NAME = "gym_aquacollect"
FORMAT_VERSION = 1
#: Key under which a JSON file stores the CRC32 of the rest of its content.
SELF_CHECKSUM_KEY = "crc32"


class DatasetFormatError(OSError):
    """A dataset file is missing, corrupt or not of this format (the message names the file)."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it (``/proc``); falls back to set-and-restore."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any, *, exclusive: bool = False) -> bool:
    """Write ``obj`` as JSON to ``path`` atomically (temp file, fsync, rename, fsync dir).

    The file gets the permissions any new file (a shard) gets: ``0o666`` less the umask (not the
    ``0o600`` of a temporary file), so a dataset shared with other users is readable as a whole.
    With ``exclusive=True`` the file is only created if absent (``os.link``); returns False if it existed.
    """
    path = Path(path)
    if isinstance(obj, dict):
        obj = {**{k: v for k, v in obj.items() if k != SELF_CHECKSUM_KEY}, SELF_CHECKSUM_KEY: json_checksum(obj)}
    data = json.dumps(obj, indent=1, sort_keys=False, allow_nan=True).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return True


def json_checksum(obj: dict[str, Any]) -> str:
    """``"crc32:<hex>"`` of a dict's canonical JSON, leaving out its own checksum key."""
    body = {k: v for k, v in obj.items() if k != SELF_CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return f"crc32:{zlib.crc32(text.encode()):08x}"


def _read_json(path: Path) -> Any:
    """Parse a JSON file of the dataset and check its self-checksum (when it has one; then drop it)."""
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetFormatError(
            f"{path}: not valid JSON ({e}). The file is corrupt; restore it from a copy, or delete it if it is "
            "a manifest (its shards are then ignored)."
        ) from None
    if isinstance(obj, dict) and SELF_CHECKSUM_KEY not in obj and obj:
        last_key, last = next(reversed(obj.items()))
        if isinstance(last, str) and last.startswith("crc32:"):  # the checksum is always written last
            raise DatasetFormatError(
                f"{path}: the checksum key is damaged ({last_key!r} instead of {SELF_CHECKSUM_KEY!r}): the file is "
                "corrupt. Restore it from a copy, or delete it if it is a manifest (its shards are then ignored)."
            )
    if isinstance(obj, dict) and SELF_CHECKSUM_KEY in obj:
        stored = obj.pop(SELF_CHECKSUM_KEY)
        if stored != json_checksum(obj):
            raise DatasetFormatError(
                f"{path}: checksum mismatch (stored {stored}, content gives {json_checksum(obj)}): the file is "
                "corrupt. Restore it from a copy, or delete it if it is a manifest (its shards are then ignored)."
            )
    return obj


def file_checksum(path: Path | str, chunk: int = 8 << 20) -> str:
    """``"crc32:<hex>"`` of a file's bytes."""
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            crc = zlib.crc32(b, crc)
    return f"crc32:{crc:08x}"


def new_writer_id() -> str:
    """A unique, time-sortable writer id (order of writers = order they started)."""
    host = socket.gethostname().split(".")[0].replace("-", "")[:16] or "host"
    return f"w{time.time_ns():019d}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def is_dataset_dir(path: Path | str) -> bool:
    return (Path(path) / METADATA_FILE).is_file()


def _compatible(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key in ("observation_space", "action_space"):
        if old.get(key) != new.get(key):
            return (
                f"its {key} is {json.dumps(old.get(key))[:300]} but this recorder's is "
                f"{json.dumps(new.get(key))[:300]}"
            )
    return None


def _being_created(entry: Path) -> bool:
    """What another writer creating the same dataset at this moment may have made so far."""
    return entry.name in (MANIFEST_DIR, SHARD_DIR, METADATA_FILE) or (
        entry.name.startswith(f".{METADATA_FILE}.") and entry.name.endswith(".tmp")
    )


def init_dataset_dir(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Create the dataset directory with ``meta`` as its metadata, or join an existing one.

    Joining (another writer, or recording again into the same path) requires the same spaces; otherwise
    a :class:`ValueError` names both. Returns the metadata in force.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory; choose another dataset path")
    if path.is_dir() and not is_dataset_dir(path) and any(not _being_created(p) for p in path.iterdir()):
        raise FileExistsError(
            f"{path} exists, is not empty and is not a gym_aquacollect dataset (no {METADATA_FILE}); "
            "choose an empty or new directory"
        )
    (path / MANIFEST_DIR).mkdir(parents=True, exist_ok=True)
    (path / SHARD_DIR).mkdir(exist_ok=True)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta}
    if atomic_write_json(path / METADATA_FILE, meta, exclusive=True):
        return meta
    existing = _read_json(path / METADATA_FILE)
    why = _compatible(existing, meta)
    if why:
        raise ValueError(
            f"{path} already holds a dataset recorded from a different env: {why}. Record into a new path."
        )
    return existing


@dataclass
class ShardRecord:
    """One committed (closed, fsynced, immutable) shard file."""

    file: str
    n_obs_rows: int
    n_step_rows: int
    n_segments: int
    n_episodes_ended: int
    size: int
    checksum: str | None = None


@dataclass
class Manifest:
    """What one writer has committed. Replaced atomically on each commit."""

    writer_id: str
    created: float = field(default_factory=time.time)
    shards: list[ShardRecord] = field(default_factory=list)
    closed: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, root: Path) -> None:
        atomic_write_json(Path(root) / MANIFEST_DIR / f"{self.writer_id}.json", asdict(self))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        d = _read_json(path)
        try:
            return cls(
                writer_id=d["writer_id"],
                created=d.get("created", 0.0),
                shards=[ShardRecord(**s) for s in d.get("shards", [])],
                closed=bool(d.get("closed", False)),
                info=d.get("info", {}),
            )
        except (KeyError, TypeError) as e:
            raise DatasetFormatError(f"{path}: manifest is malformed ({e!r}); delete it to drop its shards") from None


def read_dataset_dir(
    path: Path | str, on_bad_manifest: Callable[[Path, DatasetFormatError], None] | None = None
) -> tuple[dict[str, Any], list[Manifest]]:
    """The metadata and all manifests (sorted by writer id, i.e. start time) of a dataset directory.

    A corrupt manifest raises :class:`DatasetFormatError`, or, with ``on_bad_manifest``, is passed to it and
    left out (its shards are then not part of what is returned).
    """
    path = Path(path)
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise DatasetFormatError(f"{path}: not a gym_aquacollect dataset (no {METADATA_FILE})")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{meta_path}: not a gym_aquacollect metadata file")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise DatasetFormatError(
            f"{meta_path}: format version {meta['format_version']} is newer than this gym_aquacollect "
            f"supports ({FORMAT_VERSION}); upgrade gym_aquacollect"
        )
    manifests = []
    mdir = path / MANIFEST_DIR
    if mdir.is_dir():
        for p in sorted(mdir.glob("*.json")):
            try:
                manifests.append(Manifest.load(p))
            except DatasetFormatError as e:
                if on_bad_manifest is None:
                    raise
                on_bad_manifest(p, e)
    return meta, manifests
