"""Property-based round trips: random nested spaces, random episode/step sequences, random flush points,
block sizes and compression; what load_dataset reads back equals what the env returned."""

from __future__ import annotations

import os
import sys
import tempfile

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_child import report_figures

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.collectors import RLCollector

SOAK = os.environ.get("AQUACOLLECT_SOAK") == "1" or "--soak" in sys.argv
EXAMPLES = int(os.environ.get("AQUACOLLECT_HYPOTHESIS_EXAMPLES", 1000 if SOAK else 100))
_TRIED = {"examples": 0, "episodes": 0, "steps": 0, "shards": 0}

# -- strategies ----------------------------------------------------------------------------------------
_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)
_box_dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.int32,
                               np.int64, np.uint16])


@st.composite
def _box(draw: st.DrawFn) -> spaces.Box:
    dtype = np.dtype(draw(_box_dtypes))
    shape = draw(_shapes)
    if dtype.kind == "f":
        return spaces.Box(-2.0, 3.0, shape, dtype)
    lo = 0 if dtype.kind == "u" else -5
    return spaces.Box(lo, lo + draw(st.integers(0, 50)), shape, dtype)


_leaf = st.one_of(
    _box(),
    st.builds(lambda n, s: spaces.Discrete(n, start=s), st.integers(1, 9), st.integers(-3, 3)),
    st.builds(lambda nv: spaces.MultiDiscrete(nv), st.lists(st.integers(1, 6), min_size=1, max_size=4)),
    st.builds(lambda n: spaces.MultiBinary(n), st.one_of(st.integers(1, 5), st.lists(st.integers(1, 3), min_size=1, max_size=2))),
    st.builds(lambda m: spaces.Text(m, min_length=0, charset="ab é漢z"), st.integers(1, 8)),
)
_keys = st.text(alphabet="abcxyz_0", min_size=1, max_size=5)


def _nested(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.dictionaries(_keys, children, min_size=1, max_size=3).map(spaces.Dict),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: spaces.Tuple(tuple(xs))),
    )


_space = st.recursive(_leaf, _nested, max_leaves=6)

_episode = st.tuples(
    st.integers(0, 90),                   # steps (0: a reset followed by nothing, not stored)
    st.sampled_from(["term", "trunc", "reset"]),  # how it ends ("reset": reset() while running)
    st.booleans(),                        # flush() somewhere inside it
)


class _ScriptEnv(gym.Env):
    """Plays a script of episodes with values sampled from its spaces; keeps what it returned."""

    def __init__(self, obs_space: spaces.Space, act_space: spaces.Space, seed: int) -> None:
        self.observation_space, self.action_space = obs_space, act_space
        self.observation_space.seed(seed)
        self.end = "term"
        self.t = 0
        self.length = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        info = {"t": self.t} if self.t % 3 == 0 else ({"flag": True, "v": np.arange(2)} if self.t % 5 == 0 else {})
        return (self.observation_space.sample(), float(self.t) * 0.25, done and self.end == "term",
                done and self.end == "trunc", info)


# -- comparison ----------------------------------------------------------------------------------------
def _stack(space: spaces.Space, values: list) -> object:
    if isinstance(space, spaces.Dict):
        return {k: _stack(s, [v[k] for v in values]) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_stack(s, [v[i] for v in values]) for i, s in enumerate(space.spaces))
    if isinstance(space, spaces.Text):
        return list(values)
    dtype = space.dtype if space.dtype is not None else np.int64
    return np.asarray(values, dtype=dtype).reshape(len(values), *space.shape)


def _assert_same(got: object, want: object, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {set(got)} != {set(want)}"
        for k in want:
            _assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}/{i}")
    elif isinstance(want, list):
        assert list(got) == want, where
    else:
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"
        np.testing.assert_array_equal(got, want, err_msg=where)


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    report_figures("hypothesis_roundtrip", dict(_TRIED))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(obs_space=_space, act_space=_space, script=st.lists(_episode, min_size=1, max_size=6),
       leave_open=st.booleans(), seed=st.integers(0, 2**16),
       compression=st.sampled_from([None, "lzf", "gzip"]), block_bytes=st.sampled_from([64, 4096, 1 << 20]))
def test_roundtrip_random_spaces_and_steps(obs_space, act_space, script, leave_open, seed, compression,
                                           block_bytes) -> None:
    inner = _ScriptEnv(obs_space, act_space, seed)
    act_space.seed(seed + 1)
    truth = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ds")
        collector = RLCollector(dataset_path=path, compression=compression, block_bytes=block_bytes,
                                flush_policy={"every_seconds": None})
        env = CollectingWrapper(inner, collector=collector)
        try:
            for k, (n, end, flush) in enumerate(script):
                inner.length, inner.end = (n if end != "reset" else n + 1), end
                obs, _ = env.reset(seed=seed + k)
                rec = {"obs": [obs], "act": [], "rew": [], "term": [], "trunc": [], "seed": seed + k}
                last = k == len(script) - 1
                for t in range(n):
                    a = act_space.sample()
                    obs, r, term, trunc, _ = env.step(a)
                    for key, v in (("obs", obs), ("act", a), ("rew", r), ("term", term), ("trunc", trunc)):
                        rec[key].append(v)
                    if flush and t == n // 2:
                        env.flush()
                    if last and leave_open and t == n - 2:
                        break
                if len(rec["act"]):
                    truth.append(rec)
        finally:
            env.close()
        ds = load_dataset(path)
        _TRIED["examples"] += 1
        _TRIED["episodes"] += len(ds)
        _TRIED["steps"] += ds.total_steps
        _TRIED["shards"] += sum(len(m.shards) for m in ds.manifests)
        assert len(ds) == len(truth), f"{len(ds)} episodes stored, {len(truth)} recorded"
        assert ds.observation_space == obs_space and ds.action_space == act_space
        for i, (ep, rec) in enumerate(zip(ds, truth)):
            n = len(rec["act"])
            assert len(ep) == n, f"episode {i}"
            _assert_same(ep.observations, _stack(obs_space, rec["obs"]), f"episode {i} observations")
            _assert_same(ep.actions, _stack(act_space, rec["act"]), f"episode {i} actions")
            np.testing.assert_array_equal(ep.rewards, np.asarray(rec["rew"], dtype=np.float64))
            np.testing.assert_array_equal(ep.terminations, np.asarray(rec["term"], dtype=bool))
            stored_open = not (rec["term"][-1] or rec["trunc"][-1])
            want_trunc = np.asarray(rec["trunc"], dtype=bool)
            if stored_open:  # reset while running, or left open at close: stored truncated
                want_trunc[-1] = True
            np.testing.assert_array_equal(ep.truncations, want_trunc)
            assert ep.metadata["truncated"] == bool(want_trunc[-1])
            assert ep.metadata["seed"] == rec["seed"]
