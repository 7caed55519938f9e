"""Shard checksums computed in parallel (storage/checksum.py) and the background sync of large shards."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.storage import writer as writer_mod
from gym_aquacollect.storage.checksum import (
    PARALLEL_MIN_BYTES,
    crc32_combine,
    file_crc32,
    parallel_file_crc32,
)
from gym_aquacollect.storage.manifest import file_checksum
from gym_aquacollect.storage.verify import verify_dataset


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=300), b=st.binary(max_size=3000), seed=st.integers(0, 2**32 - 1))
def test_crc32_combine_equals_the_crc_of_the_concatenation(a: bytes, b: bytes, seed: int) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a, seed & 0xFFFF), zlib.crc32(b), len(b)) == zlib.crc32(b, zlib.crc32(a, seed & 0xFFFF))


def test_crc32_combine_of_long_ranges() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.bytes(1 << 20), rng.bytes((5 << 20) + 3)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_parallel_file_crc32_is_the_plain_crc32(tmp_path: Path, threads: int) -> None:
    data = np.random.default_rng(threads).bytes(PARALLEL_MIN_BYTES + 12345)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    want = zlib.crc32(data)
    assert parallel_file_crc32(f, threads=threads) == want
    assert file_crc32(f) == want
    assert file_crc32(f, 1000, 5000) == zlib.crc32(data[1000:5000])
    assert file_checksum(f) == f"crc32:{want:08x}"


def test_parallel_file_crc32_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        parallel_file_crc32(tmp_path / "nope.h5")


class Frames(gym.Env):
    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((64, 64, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((64, 64, 3), self.t % 251, np.uint8), 0.0, False, self.t >= 500, {}


def test_large_shards_are_synced_while_recording_and_verify(tmp_path: Path, monkeypatch) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(writer_mod.os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    monkeypatch.setattr(writer_mod, "SYNC_AHEAD_BYTES", 8 << 20)
    env = CollectingWrapper(Frames(), tmp_path / "ds", compression=None)
    env.reset(seed=0)
    for _ in range(3000):  # 3000 x 12 KiB = 35 MiB of frames: four background syncs or more
        _, _, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset()
    env.close()
    assert len(synced) >= 3, synced
    ds = load_dataset(tmp_path / "ds")
    assert ds.total_steps == 3000
    np.testing.assert_array_equal(ds[1].observations[1:, 0, 0, 0], np.arange(1, 501) % 251)
    assert verify_dataset(tmp_path / "ds").ok


def test_no_background_sync_without_fsync(tmp_path: Path, monkeypatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(writer_mod.os, "fdatasync", lambda fd: synced.append(fd))
    monkeypatch.setattr(writer_mod, "SYNC_AHEAD_BYTES", 1 << 20)
    env = CollectingWrapper(Frames(), tmp_path / "ds", compression=None, flush_policy={"fsync": False})
    env.reset(seed=0)
    for _ in range(600):
        env.step(0)
    env.close()
    assert synced == []
