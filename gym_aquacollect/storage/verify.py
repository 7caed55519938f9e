"""Checking a dataset directory end to end: metadata, manifests and every committed shard's checksum.

Contents:
    * :class:`Problem` - one thing wrong with one file (the file, what kind of problem, what to do).
    * :class:`VerifyReport` - everything :func:`verify_dataset` found: problems, leftovers, counts.
    * :func:`verify_dataset` - read every byte of every committed shard and compare it with the CRC32 its
      writer stored in its manifest; check that the JSON files are intact and the shards open.

What counts as a problem: a JSON file (``aquacollect.json`` or a manifest) that does not parse or whose
self-checksum does not match; a shard listed in a manifest that is missing, has another size, another
CRC32, or does not open as a shard with the row counts its manifest lists; a shard entry that leaves the
dataset's ``shards/`` folder (absolute path, ``..``, an outside symlink), a file that is not a regular file,
HDF5 links or external storage, index segments outside the columns, a shard listed twice. Shard files that no manifest
lists are *not* problems: they are the unflushed tail of a writer that crashed (or is still writing) and
were never part of the dataset; the report lists them as ``unreferenced``.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper
    >>> path = tempfile.mkdtemp() + "/ds"
    >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
    ...     _ = env.reset(seed=0)
    ...     for _ in range(20):
    ...         _ = env.step(0)
    >>> report = verify_dataset(path)
    >>> report.ok, report.shards_checked, report.problems
    (True, 1, [])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gym_aquacollect.storage.manifest import (
    MANIFEST_DIR,
    METADATA_FILE,
    SHARD_DIR,
    DatasetFormatError,
    Manifest,
    _read_json,
    file_checksum,
)
from gym_aquacollect.storage.safety import shard_file

__all__ = ["Problem", "VerifyReport", "verify_dataset"]


@dataclass
class Problem:
    """One problem with one file of a dataset.

    Attributes:
        file: the file, relative to the dataset directory (e.g. ``shards/w...-000003.h5``).
        kind: ``"metadata"``, ``"manifest"``, ``"missing"``, ``"size"``, ``"checksum"``, ``"unreadable"``,
            ``"unsafe"`` (a path or link leaving the dataset, external HDF5 storage, not a regular file) or
            ``"duplicate"`` (a shard listed by more than one manifest entry).
        message: what is wrong and what to do about it.
        writer_id: the writer whose manifest lists the file (None for the metadata file).
    """

    file: str
    kind: str
    message: str
    writer_id: str | None = None

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found.

    Attributes:
        path: the dataset directory.
        problems: every problem found (empty when the dataset is intact).
        shards_checked: committed shards whose bytes were read and compared.
        bytes_checked: how many bytes that was.
        manifests: manifests read (including unreadable ones).
        unreferenced: shard files no manifest lists (crash leftovers or a live writer's open shard: not
            part of the dataset, not a problem).

    Example:
        >>> VerifyReport(path=Path("d")).ok
        True
    """

    path: Path
    problems: list[Problem] = field(default_factory=list)
    shards_checked: int = 0
    bytes_checked: int = 0
    manifests: int = 0
    unreferenced: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def bad_files(self) -> list[str]:
        """The files with problems (relative paths, in the order found)."""
        return list(dict.fromkeys(p.file for p in self.problems))

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        """A few human-readable lines (what ``aquacollect validate`` prints)."""
        head = (f"{self.path}: {self.shards_checked} shards ({self.bytes_checked / 1e6:.1f} MB) in "
                f"{self.manifests} manifests checked: ")
        lines = [head + ("OK" if self.ok else f"{len(self.problems)} problem(s)")]
        lines += [f"  {p}" for p in self.problems]
        if self.unreferenced:
            lines.append(f"  ({len(self.unreferenced)} unreferenced shard file(s): unflushed tails of crashed or "
                         "live writers, not part of the dataset)")
        return "\n".join(lines)


def verify_dataset(path: str | os.PathLike, *, check_contents: bool = True) -> VerifyReport:
    """Check a dataset directory; returns a :class:`VerifyReport` (raises only if ``path`` is no directory).

    Args:
        path: the dataset directory.
        check_contents: also open each shard and compare its row counts with its manifest entry (after
            the checksum matched). Checksums are always compared.
    """
    from gym_aquacollect.storage.shard import ShardReader  # local: shard imports h5py

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no dataset directory there")
    report = VerifyReport(path=root)
    try:
        _read_json(root / METADATA_FILE)
    except FileNotFoundError:
        report.problems.append(Problem(METADATA_FILE, "metadata", f"missing: {root} is not a gym_aquacollect dataset "
                                       "(or its metadata file was deleted)"))
    except DatasetFormatError as e:
        report.problems.append(Problem(METADATA_FILE, "metadata", _strip(e, root, METADATA_FILE)))

    referenced: dict[str, str] = {}  # shard file -> the manifest that lists it
    bad_writers: list[str] = []  # their shards are neither checked nor "unreferenced"
    mdir = root / MANIFEST_DIR
    for mpath in sorted(mdir.glob("*.json")) if mdir.is_dir() else []:
        report.manifests += 1
        rel_m = f"{MANIFEST_DIR}/{mpath.name}"
        try:
            manifest = Manifest.load(mpath)
        except DatasetFormatError as e:
            report.problems.append(Problem(rel_m, "manifest", _strip(e, root, rel_m), mpath.stem))
            bad_writers.append(mpath.stem)
            continue
        for rec in manifest.shards:
            wid = manifest.writer_id
            if rec.file in referenced:
                report.problems.append(Problem(
                    rec.file, "duplicate", f"listed again in {rel_m} (already by {referenced[rec.file]}): its episodes "
                    "would count twice; delete the duplicate manifest", wid))
                continue
            referenced[rec.file] = rel_m
            try:
                spath = shard_file(root, rec.file)
            except DatasetFormatError as e:
                missing = not os.path.lexists(root / rec.file) if isinstance(rec.file, str) else False
                report.problems.append(Problem(
                    str(rec.file), "missing" if missing else "unsafe",
                    f"listed in {rel_m} but missing" if missing else _strip(e, root, str(rec.file)), wid))
                continue
            size = spath.stat().st_size
            if size != rec.size:
                report.problems.append(Problem(
                    rec.file, "size", f"is {size} bytes but {rel_m} lists {rec.size}: truncated or overwritten; "
                    "restore it from a copy (its episodes are lost otherwise)", wid))
                continue
            if rec.checksum:
                actual = file_checksum(spath)
                report.shards_checked += 1
                report.bytes_checked += size
                if actual != rec.checksum:
                    report.problems.append(Problem(
                        rec.file, "checksum", f"checksum {actual} does not match {rec.checksum} stored in {rel_m}: "
                        "the file is corrupt; restore it from a copy (its episodes are lost otherwise)", wid))
                    continue
            if check_contents:
                try:  # also refuses links / external storage and checks the index against the columns
                    reader = ShardReader(spath)
                except DatasetFormatError as e:
                    msg = _strip(e, root, rec.file)
                    report.problems.append(Problem(rec.file, "unsafe" if "refusing" in msg else "unreadable", msg, wid))
                    continue
                try:
                    rows = (reader.n_rows["obs"], reader.n_rows["step"])
                    counts = (len(reader.segments), len(reader.episode_key))
                    if rows != (rec.n_obs_rows, rec.n_step_rows):
                        report.problems.append(Problem(
                            rec.file, "unreadable", f"holds {rows[0]} observation / {rows[1]} step rows but {rel_m} "
                            f"lists {rec.n_obs_rows} / {rec.n_step_rows}", wid))
                    elif counts != (rec.n_segments, rec.n_episodes_ended):
                        report.problems.append(Problem(
                            rec.file, "unreadable", f"holds {counts[0]} segments / {counts[1]} ended episodes but "
                            f"{rel_m} lists {rec.n_segments} / {rec.n_episodes_ended}", wid))
                finally:
                    reader.close()
    sdir = root / SHARD_DIR
    if sdir.is_dir():
        report.unreferenced = sorted(
            f"{SHARD_DIR}/{p.name}" for p in sdir.iterdir()
            if f"{SHARD_DIR}/{p.name}" not in referenced and not any(p.name.startswith(w + "-") for w in bad_writers)
        )
    return report


def _strip(e: BaseException, root: Path, rel: str) -> str:
    """An error message without the dataset path and without the file's name up front (the report names
    the file relative to the dataset)."""
    msg = str(e).replace(str(root) + os.sep, "")
    return msg[len(rel) + 2:] if msg.startswith(rel + ": ") else msg
