"""Reading for training: Dataset.sample / transitions / dataloader against a brute-force reference built
from Episode objects, on datasets whose episodes span shards, interleave (vector envs), use nested
Dict/Tuple/Text spaces, or end at a crash; with the whole dataset cached and with tiny budgets that
force the streaming path."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset
from gym_aquacollect.storage import DatasetFormatError
from tests.envs import SpaceEnv, run_episodes

torch = pytest.importorskip("torch")


# -- reference ---------------------------------------------------------------------------------------
def _tmap(fn, *trees):
    t = trees[0]
    if isinstance(t, dict):
        return {k: _tmap(fn, *(x[k] for x in trees)) for k in t}
    if isinstance(t, tuple):
        return tuple(_tmap(fn, *(x[i] for x in trees)) for i in range(len(t)))
    return fn(*trees)


def _cat(parts):
    def join(*xs):
        if isinstance(xs[0], list):
            return [s for x in xs for s in x]
        return np.concatenate(xs)

    return _tmap(join, *parts)


def reference(ds) -> dict:
    """The transitions of ``ds`` in dataset order, built the slow, obvious way from Episode objects."""
    cols = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    for ep in ds:
        n = len(ep)
        cols["obs"].append(_tmap(lambda x, n=n: x[:n], ep.observations))
        cols["next_obs"].append(_tmap(lambda x, n=n: x[1:n + 1], ep.observations))
        cols["action"].append(ep.actions)
        cols["reward"].append(ep.rewards.astype(np.float32))
        cols["terminated"].append(ep.terminations)
        cols["truncated"].append(ep.truncations)
    return {k: _cat(v) for k, v in cols.items()}


def _take(tree, idx):
    return _tmap(lambda x: [x[i] for i in idx] if isinstance(x, list) else x[idx], tree)


def _to_numpy(tree):
    return _tmap(lambda x: x.numpy() if isinstance(x, torch.Tensor) else x, tree)


def assert_same(a, b, where="batch"):
    assert type(a) is type(b) or (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)), where
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, tuple):
        assert len(a) == len(b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, list):
        assert a == b, where
    else:
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)


def _row_key(tree, j):
    out = []

    def visit(x):
        out.append(x[j] if isinstance(x, list) else np.asarray(x[j]).tobytes())
        return x

    _tmap(visit, tree)
    return tuple(out)


def _keys(batch, n):
    return [_row_key({k: batch[k] for k in sorted(batch) if k != "index"}, j) for j in range(n)]


# -- datasets ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cartpole(tmp_path_factory) -> Path:
    """Single env; commits every 300 steps and mid-episode, so episodes span shards."""
    path = tmp_path_factory.mktemp("rp") / "cp"
    with CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy={"every_steps": 300}) as env:
        env.reset(seed=0)
        for i in range(2500):
            *_, term, trunc, _ = env.step(i % 3 % 2)
            if term or trunc:
                env.reset()
            if i % 700 == 5:
                env.flush()
    return path


@pytest.fixture(scope="module")
def vector(tmp_path_factory) -> Path:
    """Three sub-envs: episodes interleave in storage (many segments per episode)."""
    path = tmp_path_factory.mktemp("rp") / "vec"
    venv = gym.make_vec("CartPole-v1", num_envs=3)
    with CollectingVectorWrapper(venv, path, chunk_steps=7, flush_policy={"every_steps": 400}) as env:
        env.reset(seed=1)
        env.action_space.seed(1)
        for _ in range(500):
            env.step(env.action_space.sample())
    return path


NESTED = spaces.Dict({
    "pos": spaces.Box(-1, 1, (3,), np.float32),
    "cam": spaces.Box(0, 255, (4, 4, 3), np.uint8),
    "t": spaces.Tuple((spaces.Discrete(5), spaces.Text(6))),
})


@pytest.fixture(scope="module")
def nested(tmp_path_factory) -> Path:
    """Dict/Tuple/Text observations, Discrete(start=-2) actions, terminated and truncated episodes."""
    path = tmp_path_factory.mktemp("rp") / "nested"
    env = SpaceEnv(NESTED, spaces.Discrete(4, start=-2), lengths=(5, 1, 9, 3), truncate_every=2)
    with CollectingWrapper(env, path, flush_policy={"every_steps": 11}) as w:
        run_episodes(w, 40, seed=3)
    return path


DATASETS = ["cartpole", "vector", "nested"]
BUDGETS = {"cached": None, "none": 0, "some": 6000}  # bytes: everything / nothing / the small columns


# -- tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("name", DATASETS)
def test_transitions_equal_brute_force_reference(request, name, budget):
    ds = load_dataset(request.getfixturevalue(name), cache_bytes=BUDGETS[budget])
    ref = reference(ds)
    got = ds.transitions()
    assert len(got["reward"]) == ds.total_steps
    assert_same(got, ref, f"{name}/{budget}")
    info = ds.transition_store().info()
    assert info["fully_cached"] == (budget == "cached")
    assert info["loaded_bytes"] <= (info["cache_bytes"])
    # obs/next_obs alignment across boundaries: next_obs of a last step is its episode's final obs
    starts = np.concatenate([[0], np.cumsum(ds.episode_lengths)])
    for e in (0, 1, len(ds) - 1):
        ep, last = ds[e], int(starts[e + 1]) - 1
        assert_same(_take(got["next_obs"], [last]), _tmap(lambda x: x[-1:] if not isinstance(x, list) else x[-1:],
                                                          ep.observations))
        assert bool(got["terminated"][last] or got["truncated"][last])


@pytest.mark.parametrize("budget", ["cached", "none"])
@pytest.mark.parametrize("name", DATASETS)
def test_sample_draws_real_transitions_reproducibly(request, name, budget):
    ds = load_dataset(request.getfixturevalue(name), cache_bytes=BUDGETS[budget])
    ref = reference(ds)
    known = set(_keys(ref, ds.total_steps))
    b = ds.sample(64, seed=7)
    assert sorted(b) == ["action", "next_obs", "obs", "reward", "terminated", "truncated"]
    assert_same(_tmap(lambda x: x[:0] if not isinstance(x, list) else [], b),
                _tmap(lambda x: x[:0] if not isinstance(x, list) else [], ref))  # same structure and dtypes
    keys = _keys(b, 64)
    assert all(k in known for k in keys), "a sampled row is not a transition of the dataset"
    assert_same(ds.sample(64, seed=7), b)
    assert keys != _keys(ds.sample(64, seed=8), 64)
    # uniform over the whole dataset: 20 x N draws reach (almost) every transition
    n = ds.total_steps
    seen = set(_keys(ds.sample(20 * n, seed=1), 20 * n)) if n <= 3000 else set()
    if seen:
        assert len(seen) >= 0.99 * len(known)


def test_sample_equals_reference_at_drawn_positions(cartpole):
    """With every column cached, a draw of every position (seeded) equals the reference row by row."""
    ds = load_dataset(cartpole)
    ref = reference(ds)
    ids = np.random.default_rng(5).integers(0, ds.total_steps, 300)
    assert_same(ds.transition_store().batch(ids), _take(ref, ids))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("budget", ["cached", "none"])
def test_dataloader_covers_each_transition_once_per_epoch(vector, budget, num_workers, shuffle):
    ds = load_dataset(vector, cache_bytes=BUDGETS[budget])
    ref = reference(ds)
    n = ds.total_steps
    loader = ds.dataloader(64, shuffle=shuffle, num_workers=num_workers, index=True, seed=3, shuffle_bytes=1)
    assert isinstance(loader, torch.utils.data.DataLoader)
    for _epoch in range(2):
        seen = []
        for batch in loader:
            assert isinstance(batch["obs"], torch.Tensor) and batch["terminated"].dtype == torch.bool
            idx = batch["index"].numpy()
            assert len(idx) <= 64
            got = _to_numpy({k: v for k, v in batch.items() if k != "index"})
            assert_same(got, _take(ref, idx))
            seen.append(idx)
        seen = np.concatenate(seen)
        assert len(seen) == n and np.array_equal(np.sort(seen), np.arange(n)), "not every transition exactly once"
        if shuffle:
            assert not np.array_equal(seen, np.sort(seen))
        elif budget == "cached":
            assert np.array_equal(seen, np.arange(n))  # dataset order


def test_dataloader_nested_spaces_with_workers(nested):
    ds = load_dataset(nested)
    ref = reference(ds)
    loader = ds.dataloader(16, shuffle=True, num_workers=2, index=True, seed=0)
    seen = []
    for batch in loader:
        idx = batch["index"].numpy()
        got = _to_numpy({k: v for k, v in batch.items() if k != "index"})
        assert isinstance(got["obs"]["t"], tuple) and isinstance(got["obs"]["t"][1], list)
        assert_same(got, _take(ref, idx))
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(ds.total_steps))


def test_dataloader_seeds_and_streaming_randomness(cartpole):
    def order(seed, budget):
        ds = load_dataset(cartpole, cache_bytes=budget)
        return np.concatenate([b["index"].numpy() for b in ds.dataloader(100, seed=seed, index=True,
                                                                          shuffle_bytes=1)])

    for budget in (None, 0):
        a = order(1, budget)
        assert np.array_equal(a, order(1, budget))
        assert not np.array_equal(a, order(2, budget))
    # the streamed order is shuffled across chunks, not just within: the first batch of an epoch comes
    # from a different part of the dataset for different seeds (chunks are ~32 MiB, so here each shard
    # is one chunk; storage order would always start in the first one)
    n = load_dataset(cartpole).total_steps
    where = {int(np.median(order(seed, 0)[:100]) * 10 // n) for seed in range(8)}
    assert len(where) >= 3, where


def test_cache_budget_is_respected_and_streaming_is_used(cartpole):
    ds = load_dataset(cartpole, cache_bytes=3000)
    store = ds.transition_store()
    info = store.info()
    assert not info["fully_cached"]
    cached = [k for k, v in info["columns"].items() if v["cached"]]
    assert cached and info["cached_bytes"] <= 3000
    assert "obs/observations" not in cached  # the biggest column stays on disk
    loader = ds.dataloader(128)
    from gym_aquacollect.integrations.torch import StreamingTransitions

    assert isinstance(loader.dataset, StreamingTransitions)
    total = sum(len(b["reward"]) for b in loader)
    ds.sample(500, seed=0)
    assert total == ds.total_steps
    assert store.info()["loaded_bytes"] <= 3000
    full = load_dataset(cartpole)
    assert full.transition_store().fully_cached and full.transition_store().info()["loaded_bytes"] == 0
    full.sample(1)
    assert full.transition_store().info()["loaded_bytes"] == full.transition_store().info()["cached_bytes"]


CRASH_CHILD = textwrap.dedent("""
    import os, sys, gymnasium as gym
    from gym_aquacollect import CollectingWrapper
    env = CollectingWrapper(gym.make("CartPole-v1"), sys.argv[1])
    env.reset(seed=0)
    for i in range(40):
        *_, term, trunc, _ = env.step(i % 2)
        if term or trunc:
            env.reset()
    env.reset(seed=1)
    for _ in range(7):   # CartPole does not end in 7 alternating steps
        env.step(0)
    env.flush()          # the open episode's 7 steps are committed, then the process dies
    os._exit(0)
""")


def test_interrupted_episode_ends_truncated_at_the_cut(tmp_path):
    path = tmp_path / "crash"
    subprocess.run([sys.executable, "-c", CRASH_CHILD, str(path)], check=True, timeout=120)
    ds = load_dataset(path, include_partial=True)
    assert ds[len(ds) - 1].metadata.get("interrupted") == "crash"
    ref = reference(ds)
    got = ds.transitions()
    assert_same(got, ref)
    last = ds.total_steps - 1
    assert got["truncated"][last] and not got["terminated"][last]
    np.testing.assert_array_equal(got["next_obs"][last], ds[len(ds) - 1].observations[-1])
    # the episode that reset() cut short also ends truncated at its cut
    cut = [e for e in range(len(ds)) if ds[e].metadata.get("interrupted") == "reset"]
    assert cut, "the child's reset(seed=1) should have interrupted a running episode"
    ends = np.cumsum(ds.episode_lengths) - 1
    assert all(got["truncated"][ends[e]] and not got["terminated"][ends[e]] for e in cut)
    complete = load_dataset(path)
    assert complete.total_steps == ds.total_steps - 7
    assert len(complete.transitions()["reward"]) == complete.total_steps


def test_multi_agent_dataset_is_a_clear_error(tmp_path):
    from gym_aquacollect import CollectingMultiAgentWrapper
    from gym_aquacollect.testing import CountingParallelEnv

    with CollectingMultiAgentWrapper(CountingParallelEnv((2, 0), max_steps=3), tmp_path / "ma") as env:
        env.reset(seed=0)
        while env.agents:
            env.step({a: 0 for a in env.agents})
    ds = load_dataset(tmp_path / "ma")
    for call in (lambda: ds.sample(4), ds.transitions, lambda: ds.dataloader(4)):
        with pytest.raises(ValueError, match=r"multi-agent.*agent\(name\)"):
            call()


def test_bad_arguments_are_clear_errors(cartpole):
    ds = load_dataset(cartpole)
    with pytest.raises(ValueError, match="unit"):
        ds.dataloader(8, unit="frames")
    with pytest.raises(ValueError, match="batch_size"):
        ds.dataloader(0)
    with pytest.raises(ValueError, match="batch_size"):
        ds.sample(0)
    with pytest.raises(TypeError, match="sampler"):
        ds.dataloader(8, sampler=[0, 1])
    with pytest.raises(ValueError, match="cache_bytes"):
        load_dataset(cartpole, cache_bytes=-1).sample(1)


def test_episode_lookup_is_cached_and_invalidated(cartpole, tmp_path):
    ds = load_dataset(cartpole)
    ep = ds[0]
    assert ds[0] is ep and ds[0].observations is ep.observations  # decoded once, not per call
    assert ds[-len(ds)] is ep
    view = ds.filter_episodes(lambda e: e.id % 2 == 1)
    assert view[0].id == 0 and len(view[0]) == len(ds[1])
    np.testing.assert_array_equal(view[0].observations, ds[1].observations)
    assert ds[0] is ep or ds[0].observations.shape == ep.observations.shape
    # read while writing: refresh() gives new episodes and a new transition index
    path = tmp_path / "live"
    env = CollectingWrapper(gym.make("CartPole-v1"), path)
    env.reset(seed=0)
    for i in range(60):
        *_, term, trunc, _ = env.step(i % 2)
        if term or trunc:
            env.reset()
    env.flush()
    live = load_dataset(path)
    n0 = live.total_steps
    assert len(live.transitions()["reward"]) == n0
    for i in range(300):
        *_, term, trunc, _ = env.step(i % 2)
        if term or trunc:
            env.reset()
    env.close()
    live.refresh()
    assert live.total_steps > n0
    assert_same(live.transitions(), reference(live))


def test_pickled_dataset_samples_without_carrying_the_cache(cartpole):
    ds = load_dataset(cartpole)
    ds.sample(8)
    assert len(ds[0].observations) == len(ds[0]) + 1
    blob = pickle.dumps(ds)
    assert len(blob) < 200_000  # decoded columns and episodes stay behind
    copy = pickle.loads(blob)
    assert copy.transition_store().info()["loaded_bytes"] == 0
    assert_same(copy.sample(32, seed=2), ds.sample(32, seed=2))


def test_episodes_unit_dataloader(nested):
    ds = load_dataset(nested)
    seen = []
    for batch in ds.dataloader(3, unit="episodes", num_workers=2, seed=0):
        assert isinstance(batch, list) and 1 <= len(batch) <= 3
        for item in batch:
            ep = ds[int(item["episode_id"])]
            assert tuple(item["observations"]["pos"].shape) == (len(ep) + 1, 3)
            np.testing.assert_array_equal(item["actions"].numpy(), ep.actions)
            seen.append(int(item["episode_id"]))
    assert sorted(seen) == list(range(len(ds)))


def test_corrupt_column_is_named(cartpole, tmp_path):
    import shutil

    import h5py

    path = tmp_path / "copy"
    shutil.copytree(cartpole, path)
    ds = load_dataset(path, cache_bytes=0)
    shard = ds._readers[0].path
    ds.close()
    with h5py.File(shard, "r+") as f:  # a shard whose reward column lost its rows
        del f["step/rewards"]
        f.create_dataset("step/rewards", data=np.zeros(3))
    with pytest.raises(DatasetFormatError, match=str(shard.name)):  # caught when the shard opens (index check)
        load_dataset(path, cache_bytes=0).transitions()


def test_empty_dataset_and_filtered_views(cartpole, tmp_path):
    with CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "empty") as env:
        env.reset(seed=0)
    empty = load_dataset(tmp_path / "empty")
    assert empty.total_steps == 0
    with pytest.raises(ValueError, match="no transitions"):
        empty.sample(1)
    assert empty.transitions()["obs"].shape == (0, 4)
    assert list(empty.dataloader(4)) == []
    # a filtered view has its own transition index (episodes renumbered from 0)
    ds = load_dataset(cartpole)
    ds.sample(1)
    for budget in (None, 0):
        view = load_dataset(cartpole, cache_bytes=budget).filter_episodes(lambda e: len(e) > 20)
        assert 0 < view.total_steps < ds.total_steps
        assert_same(view.transitions(), reference(view))
        seen = np.concatenate([b["index"].numpy() for b in view.dataloader(50, index=True)])
        assert np.array_equal(np.sort(seen), np.arange(view.total_steps))


@pytest.mark.parametrize("budget", ["cached", "none"])
def test_dataloader_spawned_workers(cartpole, budget):
    ds = load_dataset(cartpole, cache_bytes=BUDGETS[budget])
    ref = reference(ds)
    loader = ds.dataloader(256, num_workers=2, index=True, multiprocessing_context="spawn", seed=1)
    seen = []
    for batch in loader:
        idx = batch["index"].numpy()
        assert_same(_to_numpy({k: v for k, v in batch.items() if k != "index"}), _take(ref, idx))
        seen.append(idx)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(ds.total_steps))
