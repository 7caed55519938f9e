"""The commit protocol's order, observed: a shard is fsynced (and its CRC32 stored) before the manifest
that lists it replaces the old one; the manifest's temp file is fsynced before the rename, and the
directory after it. ``os.fsync`` / ``os.replace`` are wrapped to log what they act on."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import gymnasium as gym

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.collectors import RLCollector
from gym_aquacollect.storage.manifest import file_checksum


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


def test_shard_fsync_and_crc_precede_the_manifest_that_lists_it(tmp_path: Path, monkeypatch) -> None:
    events: list[tuple] = []
    lock = threading.Lock()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        with lock:
            events.append(("fsync", _fd_path(fd)))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        listed = None
        if Path(dst).parent.name == "manifests":
            with open(src) as f:
                listed = {Path(s["file"]).name: s["checksum"] for s in json.load(f)["shards"]}
        with lock:
            events.append(("replace", str(src), str(dst), listed))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "ds"
    env = CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy={"every_steps": 700, "every_seconds": None})
    env.reset(seed=0)
    for i in range(5000):
        *_, term, trunc, _ = env.step(i % 2)
        if term or trunc:
            env.reset()
        if i == 2500:
            env.flush()
    env.close()
    monkeypatch.undo()

    manifest_saves = [(i, e) for i, e in enumerate(events) if e[0] == "replace" and e[3] is not None]
    assert len(manifest_saves) >= 2, events  # a save at the flush and at close (more when commits finish apart)
    shard_names = set()
    for i, (_, src, dst, listed) in manifest_saves:
        before = events[:i]
        synced = {Path(e[1]).name for e in before if e[0] == "fsync"}
        for name in listed:
            shard_names.add(name)
            assert name in synced, f"manifest save #{i} lists {name} before it was fsynced: {events[:i + 1]}"
        # the manifest's own temp file was fsynced before the rename, the directory after it
        assert ("fsync", src) in before, f"{dst}: temp file {src} not fsynced before the rename"
        after = events[i + 1:]
        assert any(e[0] == "fsync" and e[1] == str(Path(dst).parent) for e in after), \
            f"{Path(dst).parent} not fsynced after the rename"
    # every committed shard is listed with the CRC32 of its final bytes
    ds = load_dataset(path)
    final = manifest_saves[-1][1][3]
    assert sorted(final) == sorted(shard_names) and len(final) >= 2
    for name, checksum in final.items():
        assert checksum == file_checksum(path / "shards" / name), name
    assert ds.total_steps == 5000


def test_shards_finished_together_are_listed_in_commit_order(tmp_path: Path, monkeypatch) -> None:
    """Several closed shards waiting for the finisher at once (its first fsync held back until two more
    shards were opened) are listed in the order they were written, and read back in recorded order."""
    release = threading.Event()
    real_fsync = os.fsync

    def fsync(fd):
        if "/shards/" in _fd_path(fd):
            assert release.wait(120), "the test never released the finisher"
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "ds"
    collector = RLCollector(dataset_path=path, flush_policy={"every_steps": 300, "every_seconds": None},
                            max_buffer_size=256)  # small blocks: a commit every ~300 steps
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=collector)
    seeds = []
    try:
        for seed in range(400):  # ~4k steps: a dozen commits
            seeds.append(seed)
            env.reset(seed=seed)
            while True:
                *_, term, trunc, _ = env.step(seed % 2)
                if term or trunc:
                    break
        # wait (an event on disk, not a delay) until the writer has opened a 4th shard: 3 are queued
        for _ in range(12_000):
            if len(list((path / "shards").glob("*.h5"))) >= 4:
                break
            threading.Event().wait(0.01)
        assert len(list((path / "shards").glob("*.h5"))) >= 4
    finally:
        release.set()
        env.close()
    monkeypatch.undo()
    ds = load_dataset(path)
    names = [Path(s.file).name for m in ds.manifests for s in m.shards]
    assert names == sorted(names) and len(names) >= 4  # shard files are numbered in write order
    assert [ep.metadata["seed"] for ep in ds] == seeds


def test_manifest_closed_only_after_close(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    env = CollectingWrapper(gym.make("CartPole-v1"), path)
    env.reset(seed=0)
    for _ in range(50):
        env.step(0)
    env.flush()
    (m,) = load_dataset(path).manifests
    assert not m.closed  # a live (or crashed) writer: its open episode may be recovered with include_partial
    assert len(load_dataset(path, include_partial=True)) >= 1
    env.close()
    (m,) = load_dataset(path).manifests
    assert m.closed  # closed cleanly: the open episode was stored at close, nothing partial left
    ds, dsp = load_dataset(path), load_dataset(path, include_partial=True)
    assert len(dsp) == len(ds) and all(not ep.metadata.get("interrupted") == "crash" for ep in dsp)


def test_file_checksum_covers_every_chunk(tmp_path: Path) -> None:
    """Shards grow past the 8 MiB read chunk: the CRC32 covers all of it (a flip in the first chunk counts)."""
    import zlib

    data = bytearray(os.urandom(20 << 20))
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    assert file_checksum(f) == f"crc32:{zlib.crc32(data):08x}"
    before = file_checksum(f)
    data[123] ^= 0xFF
    f.write_bytes(data)
    assert file_checksum(f) != before
