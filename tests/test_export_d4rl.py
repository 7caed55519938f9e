"""D4RL-layout export / import, checked with d3rlpy 2.8.1's MDPDataset and D4RL's own invariants."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _peers import require
from gymnasium import spaces

from gym_aquacollect.formats import ExportError
from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode, nested_equal
from gym_aquacollect.formats.d4rl import read_d4rl, write_d4rl
from tests._formats_util import cartpole, nested, record


def _d4rl_invariants(path, src):
    """What d4rl's OfflineEnv.get_dataset asserts, plus the episode split rule."""
    with h5py.File(path) as f:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            assert k in f, k
        N = src.total_steps
        assert {f[k].shape[0] for k in ("observations", "actions", "rewards", "terminals", "timeouts")} == {N}
        assert f["observations"].dtype == np.float32 and f["rewards"].dtype == np.float32
        assert f["rewards"].shape == (N,) and f["terminals"].shape == (N,)
        term, tout = f["terminals"][:], f["timeouts"][:]
        assert not np.any(term & tout)
        ends = np.flatnonzero(term | tout)
        lengths = np.diff(np.concatenate([[-1], ends])).tolist()
        assert lengths == [len(e) for e in src.iterate_episodes()]
        return f["observations"][:], f["next_observations"][:], f["actions"][:]


def test_cartpole_d4rl_with_d3rlpy(tmp_path):
    d3rlpy = require("d3rlpy")
    from d3rlpy.dataset import MDPDataset

    src = cartpole(5, tmp_path=tmp_path)
    path = write_d4rl(src, tmp_path / "cp.hdf5")
    obs, nxt, act = _d4rl_invariants(path, src)
    assert obs.shape[1:] == src.observation_space.shape and act.shape == (src.total_steps,)
    np.testing.assert_array_equal(obs, np.concatenate([e.observations[:-1] for e in src.iterate_episodes()]))
    np.testing.assert_array_equal(nxt, np.concatenate([e.observations[1:] for e in src.iterate_episodes()]))
    with h5py.File(path) as f:
        ds = MDPDataset(f["observations"][:], f["actions"][:], f["rewards"][:], f["terminals"][:], f["timeouts"][:],
                        action_space=d3rlpy.ActionSpace.DISCRETE)
    assert [e.size() for e in ds.episodes] == [len(e) for e in src.iterate_episodes()]
    assert [bool(e.terminated) for e in ds.episodes] == [bool(e.terminations[-1]) for e in src.iterate_episodes()]
    np.testing.assert_array_equal(ds.episodes[1].observations, src[1].observations[:-1])
    np.testing.assert_allclose(ds.episodes[1].rewards[:, 0], src[1].rewards)


def test_flags_both_set_and_unfinished_episode(tmp_path):
    require("d3rlpy")
    from d3rlpy.dataset import MDPDataset

    sp = spaces.Box(-1, 1, (2,), np.float32)
    mk = lambda i, T, te, tr: MemoryEpisode(  # noqa: E731
        i, np.full((T + 1, 2), i, np.float32), np.zeros((T, 1), np.float32), np.ones(T),
        np.array([False] * (T - 1) + [te]), np.array([False] * (T - 1) + [tr]))
    src = MemoryDataset([mk(0, 3, True, True), mk(1, 2, False, False), mk(2, 4, False, True)], sp,
                        spaces.Box(-1, 1, (1,), np.float32))
    path = write_d4rl(src, tmp_path / "f.hdf5")
    with h5py.File(path) as f:
        term, tout = f["terminals"][:], f["timeouts"][:]
        ds = MDPDataset(f["observations"][:], f["actions"][:], f["rewards"][:], term, tout)
    assert term.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert tout.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1]  # unfinished episode closed as a timeout
    assert [e.size() for e in ds.episodes] == [3, 2, 4]
    back = read_d4rl(path)
    assert [len(e) for e in back.iterate_episodes()] == [3, 2, 4]
    assert back[0].terminations[-1] and back[0].truncations[-1]  # restored from aquacollect metadata
    assert back[1].truncations[-1] and not back[1].terminations[-1]


def test_nested_obs_flattened_like_gymnasium_and_roundtrip(tmp_path):
    src = nested(2, tmp_path=tmp_path)
    with pytest.raises(ExportError, match="Text"):
        write_d4rl(src, tmp_path / "n.hdf5")
    from tests._formats_util import NestedImageEnv

    env = NestedImageEnv()
    env.observation_space = spaces.Dict({k: v for k, v in env.observation_space.spaces.items() if k != "t"})
    inner_obs = env._obs
    env._obs = lambda: {k: v for k, v in inner_obs().items() if k != "t"}
    src = record(env, 3)
    path = write_d4rl(src, tmp_path / "n.hdf5")
    obs, nxt, act = _d4rl_invariants(path, src)
    ep0 = src[0]
    expected = np.stack([spaces.flatten(src.observation_space, {k: v[t] for k, v in ep0.observations.items()})
                         for t in range(len(ep0))]).astype(np.float32)
    np.testing.assert_array_equal(obs[: len(ep0)], expected)
    expected_a = np.stack([spaces.flatten(src.action_space, {k: v[t] for k, v in ep0.actions.items()})
                           for t in range(len(ep0))]).astype(np.float32)
    np.testing.assert_array_equal(act[: len(ep0)], expected_a)
    back = read_d4rl(path)
    assert back.observation_space == src.observation_space
    for a, b in zip(back.iterate_episodes(), src.iterate_episodes()):
        assert nested_equal(a.observations, b.observations) and nested_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.extras["infos/k"], b.infos["k"][:-1])


def test_foreign_d4rl_without_next_observations(tmp_path):
    p = tmp_path / "plain.hdf5"
    with h5py.File(p, "w") as f:
        f["observations"] = np.arange(10, dtype=np.float32).reshape(5, 2)
        f["actions"] = np.zeros((5, 1), np.float32)
        f["rewards"] = np.ones(5, np.float32)
        f["terminals"] = np.array([0, 0, 1, 0, 0], bool)
        f["timeouts"] = np.array([0, 0, 0, 0, 1], bool)
    back = read_d4rl(p)
    assert [len(e) for e in back.iterate_episodes()] == [2, 1]
    np.testing.assert_array_equal(back[0].observations, np.arange(6, dtype=np.float32).reshape(3, 2))
    assert back[0].truncations[-1] and not back[0].terminations[-1]  # its terminal step had no next obs
