"""Reliability: corrupt bytes in shards, manifests and the metadata file are detected and named; the
other shards stay readable (``load_dataset(..., skip_corrupt=True)``)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from reliability_child import report_figures

from gym_aquacollect import CollectingWrapper, DatasetFormatError, FlushPolicy, load_dataset
from gym_aquacollect.storage.manifest import json_checksum, read_dataset_dir
from gym_aquacollect.storage.verify import verify_dataset


def _record(path: Path, seed: int, n_shards: int = 3, steps_per_shard: int = 400) -> list[dict]:
    """Record CartPole into ``path``; flush at episode ends so each shard holds whole episodes."""
    truth: list[dict] = []
    with CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy=FlushPolicy(every_seconds=None),
                           compression=None) as env:
        rng = np.random.default_rng(seed)
        for _ in range(n_shards):
            steps = 0
            while steps < steps_per_shard:
                obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
                ep = {"obs": [obs], "act": []}
                while True:
                    a = int(rng.integers(2))
                    obs, _, term, trunc, _ = env.step(a)
                    ep["obs"].append(obs)
                    ep["act"].append(a)
                    steps += 1
                    if term or trunc:
                        break
                truth.append(ep)
            env.flush()
    return truth


def _shards(path: Path) -> list[str]:
    ds = load_dataset(path)
    return [s.file for m in ds.manifests for s in m.shards]


def _flip(file: Path, offset: int) -> None:
    with open(file, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def _episode_equal(ep, truth: dict) -> bool:
    return (np.array_equal(ep.observations, np.asarray(truth["obs"]))
            and np.array_equal(ep.actions, np.asarray(truth["act"])))


def test_corrupt_shard_detected_by_name_others_readable(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    truth = _record(path, 0)
    files = _shards(path)
    assert len(files) == 3 and verify_dataset(path).ok
    bad = files[1]
    size = (path / bad).stat().st_size
    _flip(path / bad, size // 2)  # inside column data: HDF5 alone would not notice
    report = verify_dataset(path)
    assert not report.ok and report.bad_files == [bad]
    assert report.problems[0].kind == "checksum" and bad in str(report.problems[0])
    ds = load_dataset(path, skip_corrupt=True)
    assert list(ds.skipped) == [bad] and bad in ds.skipped[bad]
    # every episode of the intact shards is there and exact; none of the corrupt one is presented
    kept = [e for e in truth if any(_episode_equal(ep, e) for ep in ds)]
    assert len(kept) == len(ds)
    # the manifests (the corrupt shard's bit flip may land in its index, which opening it now checks)
    n_per = [read_dataset_dir(path)[1][0].shards[i].n_episodes_ended for i in range(3)]
    assert len(ds) == n_per[0] + n_per[2]
    for i, ep in enumerate(ds):
        j = i if i < n_per[0] else i + n_per[1]
        assert _episode_equal(ep, truth[j])


def test_truncated_or_missing_shard_named(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    _record(path, 1)
    files = _shards(path)
    with open(path / files[0], "r+b") as f:
        f.truncate(1000)
    os.unlink(path / files[2])
    report = verify_dataset(path)
    assert {(p.file, p.kind) for p in report.problems} == {(files[0], "size"), (files[2], "missing")}
    with pytest.raises(DatasetFormatError, match=files[0].split("/")[-1]):
        load_dataset(path)
    ds = load_dataset(path, skip_corrupt=True)
    assert sorted(ds.skipped) == sorted([files[0], files[2]])
    assert len(ds) == ds.manifests[0].shards[1].n_episodes_ended
    _ = [ep.observations for ep in ds]


def test_metadata_corruption_that_still_parses_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    _record(path, 2, n_shards=1)
    meta = path / "aquacollect.json"
    text = meta.read_text()
    assert '"CartPole-v1' in text
    meta.write_text(text.replace("CartPole-v1", "CartPole-v2", 1))  # valid JSON, wrong content
    with pytest.raises(DatasetFormatError, match="aquacollect.json.*checksum"):
        load_dataset(path)
    report = verify_dataset(path)
    assert report.bad_files == ["aquacollect.json"] and report.problems[0].kind == "metadata"
    meta.write_text("{ not json")
    with pytest.raises(DatasetFormatError, match="aquacollect.json"):
        load_dataset(path)


def test_corrupt_manifest_named_other_writers_readable(tmp_path: Path) -> None:
    path = tmp_path / "ds"
    t1 = _record(path, 3, n_shards=1)
    t2 = _record(path, 4, n_shards=1)
    mans = sorted((path / "manifests").glob("*.json"))
    assert len(mans) == 2
    d = json.loads(mans[0].read_text())
    d["shards"][0]["n_step_rows"] += 1  # still valid JSON
    mans[0].write_text(json.dumps(d))
    rel = f"manifests/{mans[0].name}"
    with pytest.raises(DatasetFormatError, match=mans[0].name):
        load_dataset(path)
    assert verify_dataset(path).bad_files == [rel]
    ds = load_dataset(path, skip_corrupt=True)
    assert list(ds.skipped) == [rel] and len(ds) == len(t2)
    assert all(_episode_equal(ep, t) for ep, t in zip(ds, t2))
    assert len(t1) > 0


def test_random_byte_flips_always_detected(tmp_path: Path, soak: bool) -> None:
    """Flip one random byte of a random file of the dataset, many times: verify names exactly that file,
    unless the flip left the parsed content identical (whitespace in a JSON file)."""
    src = tmp_path / "src"
    _record(src, 5, n_shards=2, steps_per_shard=300)
    files = ["aquacollect.json"] + [f"manifests/{p.name}" for p in (src / "manifests").glob("*.json")] + _shards(src)
    originals = {f: (src / f).read_bytes() for f in files}
    rng = random.Random(5)
    tries = 5000 if soak else 300
    detected = harmless = 0
    for _ in range(tries):
        f = rng.choice(files)
        data = bytearray(originals[f])
        pos = rng.randrange(len(data))
        data[pos] ^= rng.randrange(1, 256)
        (src / f).write_bytes(bytes(data))
        try:
            report = verify_dataset(src)
            if report.ok:
                assert f.endswith(".json"), f"flip at {pos} of {f} not detected"
                before = json.loads(originals[f])
                after = json.loads(bytes(data))
                assert json_checksum(before) == json_checksum(after), f"flip at {pos} of {f} changed content"
                harmless += 1
            else:
                assert report.bad_files == [f], (f, pos, report.summary())
                detected += 1
        finally:
            (src / f).write_bytes(originals[f])
    assert verify_dataset(src).ok
    report_figures("byte_flips", {"flips": tries, "detected": detected, "harmless_whitespace": harmless})
