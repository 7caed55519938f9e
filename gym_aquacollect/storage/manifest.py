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
    """Parse a JSON file of the dataset and check its self-checksum (when it has one; then drop it).

    Only a regular file is read (a FIFO or device raises :class:`DatasetFormatError` without blocking),
    and a symlink that leaves the file's folder is refused.
    """
    from gym_aquacollect.storage.safety import read_regular_file

    path = Path(path)
    real = os.path.realpath(path)
    if path.is_symlink() and os.path.dirname(real) != os.path.realpath(path.parent):
        raise DatasetFormatError(f"{path}: is a symlink to {real}, outside the dataset; refusing to read it")
    try:
        obj = json.loads(read_regular_file(path))
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise DatasetFormatError(
            f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:200]}). The file is corrupt; restore it from a "
            "copy, or delete it if it is a manifest (its shards are then ignored)."
        ) from None
    except OSError as e:
        if isinstance(e, DatasetFormatError):
            raise
        raise DatasetFormatError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and SELF_CHECKSUM_KEY not in obj and obj:
        last_key, last = next(reversed(obj.items()))
        if isinstance(last, str) and last.startswith("crc32:"):  # the checksum is always written last
            raise DatasetFormatError(
                f"{path}: the checksum key is damaged ({last_key!r} instead of {SELF_CHECKSUM_KEY!r}): the file is "
                "corrupt. Restore it from a copy, or delete it if it is a manifest (its shards are then ignored)."
            )
    if isinstance(obj, dict) and SELF_CHECKSUM_KEY in obj:
        stored = obj.pop(SELF_CHECKSUM_KEY)
        try:
            actual = json_checksum(obj)
        except (ValueError, TypeError, RecursionError) as e:
            raise DatasetFormatError(f"{path}: content cannot be checksummed ({type(e).__name__}); the file is "
                                     "corrupt") from None
        if stored != actual:
            raise DatasetFormatError(
                f"{path}: checksum mismatch (stored {stored}, content gives {json_checksum(obj)}): the file is "
                "corrupt. Restore it from a copy, or delete it if it is a manifest (its shards are then ignored)."
            )
    return obj


def file_checksum(path: Path | str) -> str:
    """``"crc32:<hex>"`` of a file's bytes (large files: ranges checksummed in parallel and combined, see
    :mod:`gym_aquacollect.storage.checksum`; the value is the plain CRC32 either way)."""
    from gym_aquacollect.storage.checksum import parallel_file_crc32

    return f"crc32:{parallel_file_crc32(path):08x}"


def new_writer_id() -> str:
    """A unique, time-sortable writer id (order of writers = order they started)."""
    host = socket.gethostname().split(".")[0].replace("-", "")[:16] or "host"
    return f"w{time.time_ns():019d}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def is_dataset_dir(path: Path | str) -> bool:
    """True when ``path`` holds an ``aquacollect.json`` (of any file type: reading it checks that it is a
    regular file, so a FIFO there is reported by name instead of making the directory look foreign)."""
    return os.path.lexists(Path(path) / METADATA_FILE)


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
        """Read and check a manifest file: every field of the expected type, the file named after its
        writer id; anything else raises :class:`DatasetFormatError` naming the file."""
        d = _read_json(path)

        def bad(why: str) -> DatasetFormatError:
            return DatasetFormatError(f"{path}: manifest is malformed ({why}); delete it to drop its shards")

        if not isinstance(d, dict):
            raise bad(f"a JSON {type(d).__name__}, not an object")
        wid = d.get("writer_id")
        if not isinstance(wid, str) or not wid or "/" in wid or "\\" in wid or "\x00" in wid:
            raise bad(f"writer_id is {wid!r}")
        if Path(path).name != f"{wid}.json":
            raise DatasetFormatError(
                f"{path}: manifest of writer {wid!r} is not named {wid}.json (a copy or a renamed file would list "
                "that writer's shards twice); delete it")
        created = d.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise bad(f"created is {created!r}")
        closed, info, shards = d.get("closed", False), d.get("info", {}), d.get("shards", [])
        if not isinstance(closed, bool):
            raise bad(f"closed is {closed!r}")
        if not isinstance(info, dict):
            raise bad(f"info is {type(info).__name__}")
        if not isinstance(shards, list):
            raise bad(f"shards is {type(shards).__name__}")
        records = []
        for i, s in enumerate(shards):
            if not isinstance(s, dict):
                raise bad(f"shards[{i}] is {type(s).__name__}")
            try:
                rec = ShardRecord(**s)
            except TypeError as e:
                raise bad(f"shards[{i}]: {e}") from None
            if not isinstance(rec.file, str):
                raise bad(f"shards[{i}].file is {rec.file!r}")
            for name in ("n_obs_rows", "n_step_rows", "n_segments", "n_episodes_ended", "size"):
                v = getattr(rec, name)
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 62:
                    raise bad(f"shards[{i}].{name} is {v!r}")
            if rec.checksum is not None and not isinstance(rec.checksum, str):
                raise bad(f"shards[{i}].checksum is {rec.checksum!r}")
            records.append(rec)
        return cls(writer_id=wid, created=float(created), shards=records, closed=closed, info=info)


def read_dataset_dir(
    path: Path | str, on_bad_manifest: Callable[[Path, DatasetFormatError], None] | None = None
) -> tuple[dict[str, Any], list[Manifest]]:
    """The metadata and all manifests (sorted by writer id, i.e. start time) of a dataset directory.

    A corrupt manifest raises :class:`DatasetFormatError`, or, with ``on_bad_manifest``, is passed to it and
    left out (its shards are then not part of what is returned).
    """
    path = Path(path)
    meta_path = path / METADATA_FILE
    if not os.path.lexists(meta_path):
        raise DatasetFormatError(f"{path}: not a gym_aquacollect dataset (no {METADATA_FILE})")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{meta_path}: not a gym_aquacollect metadata file")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise DatasetFormatError(f"{meta_path}: format_version is {version!r}, not an integer; the file is corrupt")
    if version > FORMAT_VERSION:
        raise DatasetFormatError(
            f"{meta_path}: format version {meta['format_version']} is newer than this gym_aquacollect "
            f"supports ({FORMAT_VERSION}); upgrade gym_aquacollect"
        )
    for key in ("observation_space", "action_space"):
        if not isinstance(meta.get(key), dict):
            raise DatasetFormatError(f"{meta_path}: {key} is missing or not an object; the file is corrupt")
    spec = meta.get("env_spec")
    if spec is not None and not isinstance(spec, (str, dict)):
        raise DatasetFormatError(f"{meta_path}: env_spec is {type(spec).__name__}; the file is corrupt")
    manifests = []
    owner: dict[str, Path] = {}  # shard file -> the manifest that lists it
    mdir = path / MANIFEST_DIR
    if mdir.is_dir():
        for p in sorted(mdir.glob("*.json")):
            try:
                m = Manifest.load(p)
                mine: dict[str, Path] = {}
                for rec in m.shards:
                    first = mine.get(rec.file) or owner.get(rec.file)
                    if first is not None:
                        where = "twice" if first == p else f"that {first.name} lists too"
                        raise DatasetFormatError(
                            f"{p}: lists the shard {rec.file} {where}; a shard belongs to one writer once. Delete "
                            "the duplicate manifest (or load with skip_corrupt=True to leave it out)")
                    mine[rec.file] = p
            except DatasetFormatError as e:
                if on_bad_manifest is None:
                    raise
                on_bad_manifest(p, e)
                continue
            owner.update(mine)
            manifests.append(m)
    return meta, manifests
