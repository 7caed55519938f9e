"""BufferCollector: replay sampling returns real transitions; overflow spills/drops/raises; memory limit."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import psutil
import pytest
from _peers import require
from gymnasium import spaces
from loguru import logger

from gym_aquacollect import BufferCollector, CollectingWrapper, load_dataset
from gym_aquacollect.collectors import BufferOverflowError


def run_cartpole(collector, steps, seed=0):
    """Record CartPole with random actions; return the ground-truth transitions and episodes."""
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=collector)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    trans, episodes, ep = [], [], [obs.copy()]
    for _ in range(steps):
        a = int(env.action_space.sample())
        nxt, r, term, trunc, _ = env.step(a)
        trans.append((obs.copy(), a, r, nxt.copy(), term, trunc))
        ep.append(nxt.copy())
        obs = nxt
        if term or trunc:
            episodes.append(np.stack(ep))
            obs, _ = env.reset()
            ep = [obs.copy()]
    if len(ep) > 1:
        episodes.append(np.stack(ep))
    return env, trans, episodes


def key(o, a, n):
    return o.tobytes() + bytes([a]) + n.tobytes()


def test_samples_are_real_transitions_from_the_ring(tmp_path):
    buf = BufferCollector(name="b", save_path=tmp_path, max_buffer_size=300, buffer_batch_size=32)
    env, trans, _ = run_cartpole(buf, 2000)
    assert len(buf) <= 300 and len(buf) > 300 - 32
    recent = {key(o, a, n): (r, te, tr) for o, a, r, n, te, tr in trans[-len(buf):]}
    batch = buf.sample(5000, seed=0)
    assert batch["obs"].shape == (5000, 4) and batch["obs"].dtype == np.float32
    assert batch["reward"].dtype == np.float32 and batch["terminated"].dtype == bool
    ends = 0
    for i in range(5000):
        k = key(batch["obs"][i], int(batch["action"][i]), batch["next_obs"][i])
        assert k in recent, "sampled transition is not one of the last len(buf) recorded ones"
        assert recent[k] == (batch["reward"][i], batch["terminated"][i], batch["truncated"][i])
        ends += bool(batch["terminated"][i])
    assert ends > 0  # final transitions are sampled, with their real final observation as next_obs
    # uniform: every transition in the ring is drawn, none far more often than the others
    counts = np.unique([key(o, int(a), n) for o, a, n in
                        zip(batch["obs"], batch["action"], batch["next_obs"])], return_counts=True)[1]
    assert len(counts) == len(recent)
    assert counts.max() < 3 * 5000 / len(recent)
    env.close()


def test_sampling_is_reproducible_and_torch(tmp_path):
    torch = require("torch")
    buf = BufferCollector(name="b", save_path=tmp_path, max_buffer_size=1000)
    env, _, _ = run_cartpole(buf, 500)
    a, b = buf.sample(64, seed=7), buf.sample(64, seed=7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    t = buf.sample(64, seed=7, as_torch=True, device="cpu")
    assert set(t) == {"obs", "action", "reward", "next_obs", "terminated", "truncated"}
    assert isinstance(t["obs"], torch.Tensor) and t["terminated"].dtype == torch.bool
    np.testing.assert_array_equal(t["next_obs"].numpy(), a["next_obs"])
    env.close()


def test_spilled_and_final_data_make_the_full_dataset(tmp_path):
    buf = BufferCollector(name="b", save_path=tmp_path, max_buffer_size=250, buffer_batch_size=40)
    env, trans, episodes = run_cartpole(buf, 3000, seed=1)
    assert buf.get_dataset_statistics()["spilled_steps"] > 0
    env.close()
    ds = load_dataset(buf.dataset_path)
    assert ds.total_steps == 3000 and len(ds) == len(episodes)
    for ep, want in zip(ds, episodes):
        np.testing.assert_array_equal(ep.observations, want)
    np.testing.assert_array_equal(np.concatenate([ep.actions for ep in ds]), [t[1] for t in trans])


def test_drop_leaves_out_whole_episodes(tmp_path):
    buf = BufferCollector(name="b", save_path=tmp_path, max_buffer_size=200, buffer_batch_size=50, on_overflow="drop")
    env, _, episodes = run_cartpole(buf, 2000, seed=2)
    env.close()
    st = buf.get_dataset_statistics()
    ds = load_dataset(buf.dataset_path)
    assert st["dropped_steps"] > 0 and 0 < len(ds) < len(episodes)
    assert ds.total_steps + st["dropped_steps"] >= 2000 - 200
    stored = {e.tobytes() for e in episodes}
    for ep in ds:  # what is stored is complete episodes, exactly as recorded
        assert ep.observations.tobytes() in stored
    assert st["dropped_episodes"] == len(episodes) - len(ds)


def test_raise_instead_of_losing_data_and_save_makes_room(tmp_path):
    buf = BufferCollector(name="b", save_path=tmp_path, max_buffer_size=100, buffer_batch_size=10, on_overflow="raise")
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=buf)
    env.reset(seed=0)
    n = 0
    with pytest.raises(BufferOverflowError, match="on_overflow='raise'"):
        for _ in range(200):
            *_, term, trunc, _ = env.step(n % 2)
            n += 1
            if term or trunc:
                env.reset()
    assert n == 100  # the 101st step found the ring full of unsaved data (and was not recorded)
    assert buf.save() == buf.dataset_path
    env.reset()  # the env moved on without the recorder: start a fresh episode
    for _ in range(50):  # saved rows may leave the ring
        *_, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset()
    env.close()
    assert load_dataset(buf.dataset_path).total_steps == 150


class ImageEnv(gym.Env):
    """64x64x3 uint8 frames whose content is a function of (episode, t), so stored data can be checked."""

    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Discrete(3)

    def __init__(self, length=97):
        self.length = length
        self.k = -1
        self.ramp = np.arange(64 * 64 * 3, dtype=np.int64).reshape(64, 64, 3)

    def frame(self, k, t):
        return ((self.ramp + 31 * k + 7 * t) % 251).astype(np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k += 1
        self.t = 0
        return self.frame(self.k, 0), {}

    def step(self, action):
        self.t += 1
        return self.frame(self.k, self.t), 1.0, self.t >= self.length, False, {}


def test_memory_limit_holds_under_long_image_collection(tmp_path):
    proc = psutil.Process()
    base = proc.memory_info().rss
    limit_mb = base / (1 << 20) + 150
    warnings = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    try:
        buf = BufferCollector(name="img", save_path=tmp_path, max_buffer_size=1_000_000, memory_limit_mb=limit_mb,
                              compression_enabled=False, buffer_batch_size=512)
        env = CollectingWrapper(ImageEnv(), collector=buf)
        env.reset(seed=0)
        steps, peak = 30_000, 0  # 30k frames of 12 KiB = 352 MiB through a 150 MiB budget
        for i in range(steps):
            *_, term, trunc, _ = env.step(i % 3)
            if term or trunc:
                env.reset()
            if i % 500 == 0:
                peak = max(peak, proc.memory_info().rss)
                if i > 20_000:
                    batch = buf.sample(32, seed=i)
                    assert batch["obs"].shape == (32, 64, 64, 3)
        st = buf.get_dataset_statistics()
        env.close()
    finally:
        logger.remove(sink)
    assert peak <= limit_mb * (1 << 20), f"RSS peaked at {peak / 2**20:.0f} MB over the {limit_mb:.0f} MB limit"
    assert st["buffer_capacity"] < steps and st["spilled_steps"] > 0
    assert sum("memory_limit_mb" in w for w in warnings) == 1
    # spilled data is readable and exact
    ds = load_dataset(buf.dataset_path)
    assert ds.total_steps == steps
    env0 = ImageEnv()
    for ep in ds.iterate_episodes(range(0, len(ds), 25)):
        k = ep.id
        assert ep.observations.shape == (len(ep) + 1, 64, 64, 3)
        for t in (0, len(ep) // 2, len(ep)):
            np.testing.assert_array_equal(ep.observations[t], env0.frame(k, t))


def test_dict_observations_and_step_callbacks(tmp_path):
    space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32), "n": spaces.Discrete(5)})

    class DictEnv(gym.Env):
        observation_space = space
        action_space = spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return {"pos": np.zeros(2, np.float32), "n": 0}, {}

        def step(self, action):
            self.t += 1
            return ({"pos": np.full(2, self.t / 10, np.float32), "n": self.t % 5}, float(self.t), self.t == 4, False, {})

    buf = BufferCollector(name="d", save_path=tmp_path, max_buffer_size=50,
                          step_callbacks=[lambda c, s: {"t": s["t"]}])
    env = CollectingWrapper(DictEnv(), collector=buf)
    env.reset(seed=0)
    for _ in range(12):
        *_, term, _, _ = env.step(np.zeros(1, np.float32))
        if term:
            env.reset()
    b = buf.sample(100, seed=0)
    assert b["obs"]["pos"].shape == (100, 2) and b["next_obs"]["n"].shape == (100,)
    t_next = (b["next_obs"]["pos"][:, 0] * 10).round().astype(int)
    np.testing.assert_array_equal(t_next, b["reward"].astype(int))  # next_obs belongs to the same step
    np.testing.assert_array_equal((b["obs"]["pos"][:, 0] * 10).round().astype(int), t_next - 1)
    env.close()
    ds = load_dataset(buf.dataset_path)
    assert ds[0].extras["t"].tolist() == [0, 1, 2, 3]


class CountEnv(gym.Env):
    """Observation ``[episode, t]``; episodes of ``length`` steps; info ``t`` always, ``late`` from t >= 30 of the
    run's step count, ``even`` on even t only, so stored infos can be checked row by row."""

    observation_space = spaces.Box(-1e9, 1e9, (2,), np.float32)
    action_space = spaces.Discrete(4)

    def __init__(self, length=17):
        self.length, self.k, self.n = length, -1, 0

    def info(self):
        out = {"t": self.t}
        if self.n >= 30:
            out["late"] = float(self.n)
        if self.t % 2 == 0:
            out["even"] = self.t * 10
        return out

    def obs(self):
        return np.array([self.k, self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k, self.t = self.k + 1, 0
        return self.obs(), self.info()

    def step(self, action):
        self.t += 1
        self.n += 1
        return self.obs(), float(action), self.t >= self.length, False, self.info()


def test_sample_and_len_see_every_step_recorded_so_far(tmp_path):
    buf = BufferCollector(name="s", save_path=tmp_path, max_buffer_size=1000)
    env = CollectingWrapper(CountEnv(length=9), collector=buf)
    env.reset(seed=0)
    for n in range(1, 41):
        env.step(n % 4)
        if env.collector.awaiting_reset:
            env.reset()
        assert len(buf) == n  # the rows the engine still held were handed over
        if n in (1, 2, 9, 10, 23):
            b = buf.sample(4000, seed=n)
            pairs = {(tuple(o), tuple(x)) for o, x in zip(b["obs"].tolist(), b["next_obs"].tolist())}
            want = {((k, t - 1), (k, t)) for k in range(5) for t in range(1, 10) if 9 * k + t <= n}
            assert pairs == {(tuple(map(float, o)), tuple(map(float, x))) for o, x in want}
    env.close()


def test_infos_and_extras_reach_disk_through_the_ring(tmp_path):
    buf = BufferCollector(name="i", save_path=tmp_path, max_buffer_size=50, buffer_batch_size=8, record_infos=True,
                          step_callbacks=[lambda c, s: {"twice": 2 * s["t"]}])
    env = CollectingWrapper(CountEnv(length=17), collector=buf)
    env.reset(seed=0)
    for _ in range(200):
        *_, term, trunc, _ = env.step(1)
        if term or trunc:
            env.reset()
    env.close()
    assert buf.spilled_steps > 0
    ds = load_dataset(buf.dataset_path)
    assert ds.total_steps == 200 and len(ds) == 12
    n = 0  # steps of the run before each row
    for k, ep in enumerate(ds):
        t = np.arange(len(ep) + 1)
        np.testing.assert_array_equal(ep.observations, np.stack([np.full_like(t, k), t], 1))
        assert ep.infos["t"].tolist() == t.tolist()
        run_n = n + t  # CountEnv.n when each row's info was made (reset rows: the previous step's count)
        # a key absent from an episode has no column there; a key present on every row has no mask
        late = ep.infos.get("_late", np.full(len(t), "late" in ep.infos))
        assert late.tolist() == (run_n >= 30).tolist()
        if late.any():
            np.testing.assert_array_equal(ep.infos["late"][late], run_n[late])
        assert ep.infos["_even"].tolist() == (t % 2 == 0).tolist()
        np.testing.assert_array_equal(ep.infos["even"][t % 2 == 0], 10 * t[t % 2 == 0])
        assert ep.extras["twice"].tolist() == (2 * t[:-1]).tolist()
        n += len(ep)


def test_steps_that_are_not_recorded_need_no_room(tmp_path):
    """A full ring of unsaved data with on_overflow='raise' only refuses steps that would be recorded."""
    buf = BufferCollector(name="r", save_path=tmp_path, max_buffer_size=10, buffer_batch_size=5, on_overflow="raise",
                          schedule=lambda i: i == 0)
    env = CollectingWrapper(CountEnv(length=10), collector=buf)
    env.reset(seed=0)
    for _ in range(30):  # episode 0 fills the ring; episodes 1 and 2 are not recorded
        *_, term, _, _ = env.step(0)
        if term:
            env.reset()
    assert len(buf) == 10
    env.close()
    ds = load_dataset(buf.dataset_path)
    assert len(ds) == 1 and len(ds[0]) == 10 and buf.get_dataset_statistics()["skipped_episodes"] == 2


@pytest.mark.parametrize("before_close", ["sample", "flush"])
def test_an_episode_handed_over_before_it_ends_is_stored_whole(tmp_path, before_close):
    buf = BufferCollector(name="h", save_path=tmp_path, max_buffer_size=100)
    env = CollectingWrapper(CountEnv(length=50), collector=buf)
    env.reset(seed=0)
    for _ in range(13):
        env.step(0)
    getattr(buf, before_close)()  # all 13 rows leave the engine (flush: and reach the disk) before the end
    env.close()
    (ep,) = load_dataset(buf.dataset_path)
    assert len(ep) == 13 and ep.metadata["interrupted"] == "close" and ep.metadata["truncated"]
    assert ep.observations[:, 1].tolist() == list(range(14))


def test_on_block_takes_pieces_in_any_row_layout(tmp_path):
    """Blocks from another producer: pieces whose rows are not in piece order, unused rows between them, and an
    episode that continues from one block into the next; a few pieces per block, then many."""
    from gym_aquacollect.collectors.base import env_info
    from gym_aquacollect.storage.writer import Block, EpisodeEnd, Piece

    def block(parts):
        """``parts``: (key, first t, steps, starts the episode, ends it); rows laid out last part first."""
        obs_rows, act_rows, pieces, ends, o, s = [], [], [], [], 0, 0
        for key, t0, n, starts, ends_here in reversed(parts):
            ts = range(t0 if starts else t0 + 1, t0 + n + 1)  # a continuation has no row for t0 (sent before)
            obs_rows += [[key, t] for t in ts] + [[-1, -1]]  # one unused row after each piece
            act_rows += [t % 4 for t in range(t0, t0 + n)] + [3]
            pieces.append(Piece(key, o, len(ts), s, n))
            o, s = o + len(ts) + 1, s + n + 1
            if ends_here:
                ends.append(EpisodeEnd(key, t0 + n, 0.0, 1, {"seed": None}))
        pieces.sort(key=lambda p: p.key)
        nst = len(act_rows)
        return Block({"observations": np.array(obs_rows, np.float32)},
                     {"actions": np.array(act_rows, np.int64), "rewards": np.zeros(nst),
                      "terminations": np.zeros(nst, bool), "truncations": np.zeros(nst, bool)},
                     len(obs_rows), nst, pieces, ends[::-1])

    lengths = {k: 3 + (k % 4) for k in range(20)}
    blocks = [[(0, 0, lengths[0], True, True), (1, 0, 2, True, False)],  # episode 1 continues in the next block
              [(1, 2, lengths[1] - 2, False, True), (2, 0, lengths[2], True, True)],
              [(k, 0, lengths[k], True, True) for k in range(3, 9)] + [(9, 0, 1, True, False)],
              [(9, 1, lengths[9] - 1, False, True)] + [(k, 0, lengths[k], True, True) for k in range(10, 16)]]
    buf = BufferCollector(name="p", save_path=tmp_path, max_buffer_size=1000)
    buf.initialize_configs(env_info(CountEnv()))
    buf.start_collection()
    total = 0
    for parts in blocks:
        buf.on_block(block(parts))
        total += sum(n for _, _, n, _, _ in parts)
        assert len(buf) == total
        b = buf.sample(3000, seed=0)
        np.testing.assert_array_equal(b["next_obs"][:, 0], b["obs"][:, 0])  # never across episodes
        np.testing.assert_array_equal(b["next_obs"][:, 1], b["obs"][:, 1] + 1)
        np.testing.assert_array_equal(b["action"], b["obs"][:, 1] % 4)
        assert (b["obs"][:, 0] >= 0).all()  # the unused rows are never taken
        assert set(b["obs"][:, 0].astype(int).tolist()) == {k for p in blocks[:blocks.index(parts) + 1] for k, *_ in p}
    buf.end_collection()
    ds = load_dataset(buf.dataset_path)
    assert len(ds) == 16
    for k, ep in enumerate(ds):
        assert ep.observations.tolist() == [[k, t] for t in range(lengths[k] + 1)]
        assert ep.actions.tolist() == [t % 4 for t in range(lengths[k])]


@pytest.mark.parametrize("seed", range(6))
def test_random_ring_sizes_and_hand_overs_keep_every_transition_exact(tmp_path, seed):
    """Random ring / batch sizes, episode lengths and calls of sample / flush / len between steps: the ring
    always holds the latest transitions exactly, and the dataset (spill) holds every episode exactly."""
    rng = np.random.default_rng(seed)
    cap, batch = int(rng.integers(1, 40)), int(rng.integers(1, 12))
    buf = BufferCollector(name="f", save_path=tmp_path, max_buffer_size=cap, buffer_batch_size=batch,
                          block_bytes=int(rng.choice([200, 4 << 20])))
    env = CollectingWrapper(CountEnv(length=int(rng.integers(1, 9))), collector=buf)
    env.reset(seed=0)
    done_steps = []  # (episode, t) of each recorded step, in order
    for _ in range(300):
        obs, *_ = env.step(int(rng.integers(4)))
        done_steps.append((int(obs[0]), int(obs[1])))
        if env.collector.awaiting_reset:
            env.unwrapped.length = int(rng.integers(1, 9))
            env.reset()
        r = rng.random()
        if r < 0.2:
            n = len(buf)  # fewer than cap when short episodes fill the observation ring first
            assert 1 <= n <= min(cap, len(done_steps))
            b = buf.sample(2000)
            got = {(int(o[0]), int(x[1])) for o, x in zip(b["obs"], b["next_obs"])}
            assert done_steps[-1] in got and got <= set(done_steps[-n:])  # the newest step, nothing older
            assert (b["next_obs"][:, 1] == b["obs"][:, 1] + 1).all()
        elif r < 0.25:
            buf.flush()
    env.close()
    ds = load_dataset(buf.dataset_path)
    assert ds.total_steps == 300
    stored = [(k, t) for k, ep in enumerate(ds) for t in ep.observations[1:, 1].astype(int).tolist()]
    assert stored == done_steps
    for ep in ds:
        assert ep.observations[:, 1].tolist() == list(range(len(ep) + 1))
