"""Round trips through CollectingWrapper -> disk -> load_dataset for every space kind."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from gym_aquacollect import CollectingWrapper, load_dataset
from tests.envs import SpaceEnv, run_episodes


def _rows_equal(space, rows, stacked):
    """``rows``: list of per-step values; ``stacked``: what the dataset returned for the episode."""
    if isinstance(space, spaces.Dict):
        assert isinstance(stacked, dict) and set(stacked) == set(space.spaces)
        for k, sub in space.spaces.items():
            _rows_equal(sub, [r[k] for r in rows], stacked[k])
    elif isinstance(space, spaces.Tuple):
        assert isinstance(stacked, tuple) and len(stacked) == len(space.spaces)
        for i, sub in enumerate(space.spaces):
            _rows_equal(sub, [r[i] for r in rows], stacked[i])
    elif isinstance(space, spaces.Text):
        assert stacked == list(rows)
    else:
        expected = np.stack([np.asarray(r, dtype=space.dtype) for r in rows])
        assert stacked.dtype == space.dtype, (stacked.dtype, space.dtype)
        np.testing.assert_array_equal(stacked, expected)


SPACES = {
    "box_f32": spaces.Box(-1, 1, (3,), np.float32),
    "box_f64_2d": spaces.Box(-5, 5, (2, 3), np.float64),
    "box_image_u8": spaces.Box(0, 255, (16, 16, 3), np.uint8),
    "box_int16": spaces.Box(-100, 100, (4,), np.int16),
    "discrete": spaces.Discrete(7, start=-2),
    "multidiscrete": spaces.MultiDiscrete([3, 5, 2]),
    "multibinary": spaces.MultiBinary(6),
    "text": spaces.Text(12, charset="abcxyz é"),
    "dict": spaces.Dict({"pos": spaces.Box(-1, 1, (3,)), "n": spaces.Discrete(4)}),
    "nested": spaces.Dict({
        "pos": spaces.Box(-1, 1, (3,)),
        "t": spaces.Tuple((spaces.Discrete(5), spaces.Text(8), spaces.Dict({"deep": spaces.MultiBinary(2)}))),
        "img": spaces.Box(0, 255, (8, 8, 1), np.uint8),
    }),
    "tuple": spaces.Tuple((spaces.Box(0, 1, (2,)), spaces.MultiDiscrete([4, 4]))),
}


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("compression", [None, "lzf"])
def test_observation_and_action_round_trip(tmp_path, name, compression):
    space = SPACES[name]
    act_space = SPACES["nested"] if name == "dict" else SPACES[name]
    inner = SpaceEnv(space, act_space, lengths=(4, 1, 6), truncate_every=2)
    with CollectingWrapper(inner, tmp_path / "ds", compression=compression) as env:
        run_episodes(env, 5, seed=3)
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 5
    assert ds.total_steps == sum(len(e["steps"]) for e in inner.log)
    assert ds.observation_space == space and ds.action_space == act_space
    for ep, truth in zip(ds.iterate_episodes(), inner.log):
        T = len(truth["steps"])
        assert len(ep) == T
        _rows_equal(space, [truth["reset"][0]] + [s[1] for s in truth["steps"]], ep.observations)
        _rows_equal(act_space, [s[0] for s in truth["steps"]], ep.actions)
        np.testing.assert_array_equal(ep.rewards, [s[2] for s in truth["steps"]])
        np.testing.assert_array_equal(ep.terminations, [s[3] for s in truth["steps"]])
        np.testing.assert_array_equal(ep.truncations, [s[4] for s in truth["steps"]])
        assert ep.terminations.dtype == bool and ep.rewards.dtype == np.float64


def test_episode_metadata_seed_options_and_order(tmp_path):
    inner = SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), lengths=(3,), truncate_every=0)
    with CollectingWrapper(inner, tmp_path / "ds", metadata={"run": "abc"}) as env:
        env.reset(seed=11, options={"level": 2, "arr": np.arange(3)})
        for _ in range(3):
            env.step(0)
        env.reset(seed=12)
        for _ in range(3):
            env.step(1)
        env.reset()
        env.step(0)  # open at close -> stored truncated, last
    ds = load_dataset(tmp_path / "ds")
    assert [len(e) for e in ds] == [3, 3, 1]
    m0, m1, m2 = (e.metadata for e in ds)
    assert m0["seed"] == 11 and m0["options"] == {"level": 2, "arr": [0, 1, 2]}
    assert m0["terminated"] and not m0["truncated"]
    assert m1["seed"] == 12 and m2["seed"] is None
    assert m2["truncated"] and not m2["terminated"] and m2["interrupted"] == "close"
    assert ds[2].truncations.tolist() == [True]
    assert ds.metadata["metadata"] == {"run": "abc"}
    assert [e.id for e in ds] == [0, 1, 2]


def test_zero_step_episodes_are_not_stored(tmp_path):
    inner = SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Discrete(2), lengths=(2,), truncate_every=0)
    with CollectingWrapper(inner, tmp_path / "ds") as env:
        env.reset(seed=1)
        env.reset(seed=2)  # zero steps: dropped
        env.step(0)
        env.reset(seed=3)  # interrupts the 1-step episode: stored truncated
        env.reset(seed=4)  # zero steps again
    ds = load_dataset(tmp_path / "ds")
    assert len(ds) == 1
    assert ds[0].metadata["seed"] == 2 and ds[0].metadata["interrupted"] == "reset"
    assert ds[0].observations.shape == (2, 2)
    np.testing.assert_array_equal(ds[0].observations[0], inner.log[1]["reset"][0])


def test_returns_exactly_the_inner_objects(tmp_path):
    inner = SpaceEnv(spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2), lengths=(4,))
    seen = []
    orig_step, orig_reset = inner.step, inner.reset

    def spy_step(a):
        out = orig_step(a)
        seen.append(out)
        return out

    def spy_reset(**kw):
        out = orig_reset(**kw)
        seen.append(out)
        return out

    inner.step, inner.reset = spy_step, spy_reset
    with CollectingWrapper(inner, tmp_path / "ds") as env:
        out = env.reset(seed=0)
        assert out[0] is seen[-1][0] and out[1] is seen[-1][1]
        out = env.step(1)
        assert all(a is b for a, b in zip(out, seen[-1]))


def test_buffer_mutation_is_recorded_correctly(tmp_path):
    from tests.envs import MutatingEnv

    with CollectingWrapper(MutatingEnv(length=4), tmp_path / "ds") as env:
        env.reset(seed=0)
        for a in [1, 0, 1, 1]:
            env.step(a)
    ep = load_dataset(tmp_path / "ds")[0]
    np.testing.assert_array_equal(ep.observations, [[0, 0, 0], [1, 2, 1], [2, 4, 0], [3, 6, 1], [4, 8, 1]])


def test_long_episode_spans_blocks_and_shards(tmp_path):
    """An episode spread over many row blocks and several committed shards reads back contiguous."""
    space = spaces.Box(-1, 1, (5,), np.float32)
    inner = SpaceEnv(space, spaces.Discrete(3), lengths=(700, 50), truncate_every=0)
    from gym_aquacollect import RLCollector

    collector = RLCollector(block_bytes=0,  # tiny blocks (64 rows): many hand-overs and rotations
                            flush_policy={"every_steps": 300, "every_seconds": None})
    env = CollectingWrapper(inner, tmp_path / "ds", collector=collector)
    assert collector._rows == 64
    run_episodes(env, 3, seed=5)
    env.flush()
    mid = load_dataset(tmp_path / "ds")
    assert len(mid) == 3  # all three ended before the flush
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert ds.statistics()["shards"] >= 3
    for ep, truth in zip(ds, inner.log):
        expected = np.stack([truth["reset"][0]] + [s[1] for s in truth["steps"]])
        np.testing.assert_array_equal(ep.observations, expected)
        assert len(ep) == len(truth["steps"])


def test_no_path_records_to_a_fresh_logged_directory(tmp_path, monkeypatch):
    import gymnasium as gym
    from loguru import logger

    monkeypatch.chdir(tmp_path)
    messages: list[str] = []
    sink = logger.add(messages.append, level="INFO")
    try:
        with CollectingWrapper(gym.make("CartPole-v1")) as env:
            run_episodes(env, 2)
            path = env.dataset_path
    finally:
        logger.remove(sink)
    assert path.parent == tmp_path / "aquacollect-data" or path.parent.resolve() == (tmp_path / "aquacollect-data")
    assert any(str(path.resolve()) in m for m in messages)
    assert len(load_dataset(path)) == 2
    with CollectingWrapper(gym.make("CartPole-v1")) as env2:  # another fresh directory, never the same
        run_episodes(env2, 1)
        assert env2.dataset_path != path


def test_auto_compression_compresses_large_rows_only(tmp_path):
    import h5py

    space = spaces.Dict({"img": spaces.Box(0, 255, (32, 32, 3), np.uint8), "state": spaces.Box(-1, 1, (4,))})
    with CollectingWrapper(SpaceEnv(space, spaces.Discrete(2), lengths=(5,)), tmp_path / "ds") as env:
        run_episodes(env, 2)
    shard = next((tmp_path / "ds" / "shards").glob("*.h5"))
    with h5py.File(shard) as f:
        assert f["obs/observations/img"].compression == "gzip"  # large rows: deflate level 1, off the GIL
        assert f["obs/observations/img"].compression_opts == 1
        assert f["obs/observations/state"].compression is None
        assert f["step/rewards"].compression is None
    with CollectingWrapper(SpaceEnv(space, spaces.Discrete(2), lengths=(5,)), tmp_path / "gz",
                           compression=("gzip", 1)) as env:
        run_episodes(env, 1)
    with h5py.File(next((tmp_path / "gz" / "shards").glob("*.h5"))) as f:
        assert f["obs/observations/img"].compression == "gzip" and f["obs/observations/img"].compression_opts == 1
    for comp, expected in ((None, None), ("lzf", "lzf")):
        path = tmp_path / f"c{comp}"
        inner = SpaceEnv(space, spaces.Discrete(2), lengths=(5, 70), truncate_every=0)
        with CollectingWrapper(inner, path, compression=comp) as env:
            run_episodes(env, 3)
        with h5py.File(next((path / "shards").glob("*.h5"))) as f:
            assert f["obs/observations/img"].compression == expected
        ds = load_dataset(path)  # large-row columns written chunk by chunk read back exactly
        for ep, truth in zip(ds, inner.log):
            expected_img = np.stack([truth["reset"][0]["img"]] + [s[1]["img"] for s in truth["steps"]])
            np.testing.assert_array_equal(ep.observations["img"], expected_img)
    with pytest.raises(ValueError, match="compression='zstd' is not supported"):
        CollectingWrapper(SpaceEnv(space, spaces.Discrete(2)), tmp_path / "bad", compression="zstd")
