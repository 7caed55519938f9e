"""export_trajectories (pickle / npz / hdf5), the pickle guard, and load_dataset on foreign formats."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
from _peers import require

from gym_aquacollect import load_dataset
from gym_aquacollect.formats._common import MemoryDataset, nested_equal
from gym_aquacollect.formats.trajectories import UnsafePickleError, load_trajectories
from tests._formats_util import cartpole, nested


def _same(a, b, *, infos=True):
    assert len(a) == len(b)
    for x, y in zip(a.iterate_episodes(), b.iterate_episodes()):
        assert nested_equal(x.observations, y.observations)
        assert nested_equal(x.actions, y.actions)
        np.testing.assert_array_equal(x.rewards, y.rewards)
        np.testing.assert_array_equal(x.terminations, y.terminations)
        np.testing.assert_array_equal(x.truncations, y.truncations)
        if infos:
            assert nested_equal(x.infos, y.infos)


@pytest.mark.parametrize("fmt", ["pickle", "npz", "hdf5"])
def test_export_trajectories_roundtrip(tmp_path, fmt):
    src = nested(3, tmp_path=tmp_path)
    path = src.export_trajectories(tmp_path / f"t.{fmt}", format=fmt)
    back = load_trajectories(path, allow_pickle=True)
    _same(src, back)
    assert back.observation_space == src.observation_space and back.env_spec == src.env_spec
    assert back[0].metadata["seed"] == 0
    # load_dataset dispatches on the file's content
    via = load_dataset(path, allow_pickle=True)
    assert isinstance(via, MemoryDataset) and len(via) == 3


def test_include_metadata_false(tmp_path):
    src = cartpole(2, tmp_path=tmp_path)
    back = load_trajectories(src.export_trajectories(tmp_path / "t.npz", format="npz", include_metadata=False))
    _same(src, back, infos=False)
    assert back.env_spec is None and back[0].metadata == {} and back[0].infos == {}


def test_npz_needs_no_pickle(tmp_path):
    src = nested(1, tmp_path=tmp_path)
    path = src.export_trajectories(tmp_path / "t.npz", format="npz")
    with np.load(path, allow_pickle=False) as z:  # plain numpy can read every array
        assert z["episodes/0/observations/t/_index_1"].dtype.kind == "U"
        np.testing.assert_array_equal(z["episodes/0/observations/img"], src[0].observations["img"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_by_default(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"format": "x", "payload": _Evil(str(marker))}))
    with pytest.raises(UnsafePickleError, match="allow_pickle=True"):
        load_trajectories(path)
    with pytest.raises(UnsafePickleError, match="arbitrary code"):
        load_dataset(path)
    assert not marker.exists()  # nothing was unpickled
    renamed = tmp_path / "evil.bin"  # the guard sniffs content, not the extension
    os.replace(path, renamed)
    with pytest.raises(UnsafePickleError):
        load_dataset(renamed)
    assert not marker.exists()
    with pytest.raises(ValueError, match="not a gym_aquacollect trajectory file"):
        load_trajectories(renamed, allow_pickle=True)  # opting in runs it, then the header check fails
    assert marker.exists()


def test_load_dataset_opens_every_foreign_format_and_reexports(tmp_path, monkeypatch):
    require("PIL")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "mroot"))
    src = cartpole(3, tmp_path=tmp_path)
    out = src.export_for_offline_rl(tmp_path / "off")
    demos = src.export_for_teacher_student(tmp_path / "ts")
    src.to_minari("aqua/cp-v0")
    for source in (out["minari"], "aqua/cp-v0", out["d4rl"], demos):
        ds = load_dataset(source)
        assert isinstance(ds, MemoryDataset), source
        assert ds.total_steps == src.total_steps and len(ds) == 3, source
        _same(src, ds, infos=False)
        assert ds.statistics()["avg_episode_reward"] == pytest.approx(src.statistics()["avg_episode_reward"])
    # import, then export again: Minari -> D4RL / robomimic / Minari give the same arrays
    imported = load_dataset("aqua/cp-v0")
    _same(src, imported)
    again = imported.export_for_offline_rl(tmp_path / "again")
    _same(src, load_dataset(again["minari"]))
    _same(src, load_dataset(again["d4rl"]), infos=False)
    _same(src, load_dataset(imported.export_for_teacher_student(tmp_path / "ts2")), infos=False)
    with h5py.File(again["d4rl"]) as a, h5py.File(out["d4rl"]) as b:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            np.testing.assert_array_equal(a[k][:], b[k][:])


def test_unknown_file_gives_a_clear_error(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(Exception, match="x.h5"):
        load_dataset(p)


def test_collector_exports_manual_api(tmp_path, monkeypatch):
    """The seed's collector API: collect_step by hand, then export from the collector itself."""
    require("PIL")
    import gymnasium as gym

    from gym_aquacollect import RLCollector, env_info

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "mroot"))
    env = gym.make("CartPole-v1")
    c = RLCollector(name="manual", save_path=str(tmp_path))
    c.initialize_configs(env_info(env))
    c.start_collection()
    obs, _ = env.reset(seed=0)
    steps = 0
    while steps < 40:
        a = env.action_space.sample()
        nxt, r, te, tr, info = env.step(a)
        c.collect_step(observation=obs, action=a, reward=r, next_observation=nxt, done=te, truncated=tr, info=info)
        steps += 1
        obs = nxt
        if te or tr:
            obs, _ = env.reset()
    c.end_collection()
    out = c.export_for_offline_rl(tmp_path / "off")
    assert load_dataset(out["d4rl"]).total_steps == 40
    p = c.export_trajectories(tmp_path / "t.npz", format="npz")
    _same(load_dataset(c.dataset_path), load_trajectories(p))
    assert load_dataset(c.export_for_teacher_student(tmp_path / "ts")).total_steps == 40
