"""Recording overhead and throughput of CollectingWrapper, side by side with the raw env and Minari.

Run (from the repository root, in the project's venv; Minari is optional):

    python bench/bench_record.py                 # CartPole + image env, ~1-2 minutes
    python bench/bench_record.py --memory        # also RSS over 1M CartPole / 100k image steps
    python bench/bench_record.py --quick         # fewer steps, for a smoke run

Every measurement runs in this one process, interleaving the contenders over several repeats, and
reports medians and ratios to the raw env. "End to end" includes ``close()`` (and Minari's
``create_dataset``).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import psutil
from gymnasium import spaces

from gym_aquacollect import CollectingWrapper

PLAIN = "plain h5py writer thread (fsync)"


class FrameEnv(gym.Env):
    """84x84x3 uint8 frames with a near-free step: a moving bright square on a dim background."""

    observation_space = spaces.Box(0, 255, (84, 84, 3), np.uint8)
    action_space = spaces.Discrete(4)

    def __init__(self, episode_length: int = 1000, step_cost_us: float = 0.0) -> None:
        self.frame = np.full((84, 84, 3), 30, np.uint8)
        self.episode_length = episode_length
        self.step_cost = step_cost_us * 1e-6  # busy-wait per step, to emulate a real simulator

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame, {}

    def step(self, action):
        if self.step_cost:
            end = time.perf_counter() + self.step_cost
            while time.perf_counter() < end:
                pass
        self.t += 1
        x = self.t % 76
        self.frame[:, :, :] = 30
        self.frame[x:x + 8, x:x + 8, :] = 220
        return self.frame, 0.0, False, self.t >= self.episode_length, {}


class PlainH5Writer(gym.Wrapper):
    """The baseline a careful user would write by hand: every step's frame, action, reward and flags are
    copied into a batch of 256 rows; full batches go through a queue to one thread that appends them to
    chunked h5py datasets (no compression); ``close()`` drains the queue, flushes and fsyncs the file.
    No validation, no episode index, no crash safety."""

    BATCH = 256

    def __init__(self, env: gym.Env, path: str, fsync: bool = True) -> None:
        import queue
        import threading

        import h5py

        super().__init__(env)
        self.path, self.fsync = path, fsync
        shape, dt = env.observation_space.shape, env.observation_space.dtype
        self.f = h5py.File(path, "w")
        B = self.BATCH
        self.cols = {"obs": self.f.create_dataset("obs", (0, *shape), dt, maxshape=(None, *shape), chunks=(64, *shape)),
                     "act": self.f.create_dataset("act", (0,), np.int64, maxshape=(None,), chunks=(4096,)),
                     "rew": self.f.create_dataset("rew", (0,), np.float64, maxshape=(None,), chunks=(4096,)),
                     "done": self.f.create_dataset("done", (0,), np.uint8, maxshape=(None,), chunks=(4096,))}
        self.free: queue.Queue = queue.Queue()
        for _ in range(8):  # a bounded pool of batches: the env waits when the writer is 8 batches behind
            self.free.put({"obs": np.empty((B, *shape), dt), "act": np.empty(B, np.int64),
                           "rew": np.empty(B, np.float64), "done": np.empty(B, np.uint8)})
        self.full: queue.Queue = queue.Queue()
        self.batch, self.k, self.rows = self.free.get(), 0, 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.full.get()
            if item is None:
                return
            batch, n = item
            a, b = self.rows, self.rows + n
            for name, ds in self.cols.items():
                ds.resize(b, axis=0)
                ds[a:b] = batch[name][:n]
            self.rows = b
            self.free.put(batch)

    def step(self, action):
        out = self.env.step(action)
        obs, rew, term, trunc, _ = out
        b, k = self.batch, self.k
        b["obs"][k] = obs
        b["act"][k] = action
        b["rew"][k] = rew
        b["done"][k] = term | (trunc << 1)
        self.k = k = k + 1
        if k == self.BATCH:
            self.full.put((b, k))
            self.batch, self.k = self.free.get(), 0
        return out

    def close(self) -> None:
        if self.k:
            self.full.put((self.batch, self.k))
        self.full.put(None)
        self.thread.join()
        self.f.flush()
        if self.fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.f.close()
        self.env.close()


def drive(env: gym.Env, actions: list, sample: bool) -> int:
    env.reset(seed=0)
    space = env.action_space
    n = 0
    for a in actions:
        obs, r, term, trunc, info = env.step(space.sample() if sample else a)
        n += 1
        if term or trunc:
            env.reset()
    return n


def timed(make: Callable[[], tuple[gym.Env, Callable[[], None]]], actions: list, sample: bool) -> tuple[float, float]:
    """(seconds for the step loop, seconds end to end including finalisation)."""
    env, finish = make()
    gc.collect()
    os.sync()  # start every contender with no dirty page cache left by the previous one
    t0 = time.perf_counter()
    drive(env, actions, sample)
    t1 = time.perf_counter()
    finish()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0


def contenders(env_fn: Callable[[], gym.Env], tmp: str, with_minari: bool, compressions: list,
               plain: bool = False) -> dict:
    out: dict[str, Callable[[], tuple[gym.Env, Callable[[], None]]]] = {}

    def raw():
        env = env_fn()
        return env, env.close

    out["raw env"] = raw
    if plain:
        def plain_writer():
            env = PlainH5Writer(env_fn(), os.path.join(tempfile.mkdtemp(dir=tmp), "plain.h5"))
            return env, env.close

        out[PLAIN] = plain_writer
    for comp in compressions:
        def rec(comp=comp):
            path = tempfile.mkdtemp(dir=tmp)
            env = CollectingWrapper(env_fn(), os.path.join(path, "ds"), compression=comp)
            return env, env.close

        out[f"CollectingWrapper ({comp or 'none'})"] = rec
    if with_minari:
        import minari

        def mdc():
            os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp(dir=tmp)
            env = minari.DataCollector(env_fn(), record_infos=False)
            ds_id = f"bench/b{time.time_ns()}-v0"

            def finish():
                env.create_dataset(ds_id, algorithm_name="random", author="bench", author_email="b@x",
                                   code_permalink="x", description="bench")
                env.close()

            return env, finish

        out["minari.DataCollector 0.5.4"] = mdc
    return out


def run_table(title: str, env_fn, steps: int, repeats: int, with_minari: bool, compressions: list,
              sample: bool, bytes_per_step: int = 0, plain: bool = False, quiet: bool = False) -> dict[str, float]:
    """Print one table; returns the median end-to-end seconds per contender."""
    tmp = tempfile.mkdtemp(prefix="aquabench-")
    try:
        rng = np.random.default_rng(0)
        actions = rng.integers(0, env_fn().action_space.n, steps).tolist()
        cs = contenders(env_fn, tmp, with_minari, compressions, plain)
        loop: dict[str, list[float]] = {k: [] for k in cs}
        e2e: dict[str, list[float]] = {k: [] for k in cs}
        for _ in range(repeats):
            for name, make in cs.items():
                a, b = timed(make, actions, sample)
                loop[name].append(a)
                e2e[name].append(b)
            for d in os.listdir(tmp):
                shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
        base_loop = statistics.median(loop["raw env"])
        base_e2e = statistics.median(e2e["raw env"])
        if quiet:
            return {k: statistics.median(v) for k, v in e2e.items()}
        print(f"\n## {title}: {steps} steps x {repeats} repeats, medians"
              + (" (actions from env.action_space.sample())" if sample else " (precomputed actions)"))
        head = f"| {'contender':<30} | us/step loop | us/step e2e | ratio e2e |"
        if bytes_per_step:
            head += " obs GB/s e2e | user-thread us/frame |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for name in cs:
            ml, me = statistics.median(loop[name]), statistics.median(e2e[name])
            row = f"| {name:<30} | {ml / steps * 1e6:12.2f} | {me / steps * 1e6:11.2f} | {me / base_e2e:9.2f} |"
            if bytes_per_step:
                row += f" {steps * bytes_per_step / me / 1e9:12.2f} | {(ml - base_loop) / steps * 1e6:20.2f} |"
            print(row)
        return {k: statistics.median(v) for k, v in e2e.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compression_ratio(env_fn, steps: int, comp) -> float:
    tmp = tempfile.mkdtemp(prefix="aquabench-")
    try:
        env = CollectingWrapper(env_fn(), os.path.join(tmp, "ds"), compression=comp)
        drive(env, [0] * steps, False)
        env.close()
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(tmp) for f in fs)
        raw = steps * int(np.prod(env.observation_space.shape))
        return raw / size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def memory(env_fn, steps: int, comp, label: str) -> None:
    proc = psutil.Process()
    tmp = tempfile.mkdtemp(prefix="aquabench-")
    try:
        env = CollectingWrapper(env_fn(), os.path.join(tmp, "ds"), compression=comp)
        env.reset(seed=0)
        samples = []
        for i in range(steps):
            _, _, term, trunc, _ = env.step(i & 1)
            if term or trunc:
                env.reset()
            if i % max(1, steps // 20) == 0:
                samples.append(proc.memory_info().rss)
        env.close()
        samples.append(proc.memory_info().rss)
        first = samples[1] if len(samples) > 1 else samples[0]
        print(f"| {label:<34} | {steps:>9} | {first / 2**20:10.1f} | {max(samples) / 2**20:10.1f} | "
              f"{(max(samples) - first) / 2**20:9.1f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--no-minari", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    try:
        import minari  # noqa: F401
        have_minari = not args.no_minari
    except ImportError:
        have_minari = False
        print("(minari not installed: pip install 'minari[hdf5,create]==0.5.4' pillow for the baseline)")
    q = 10 if args.quick else 1
    cart = lambda: gym.make("CartPole-v1")  # noqa: E731
    run_table("CartPole-v1", cart, 200_000 // q, args.repeats, have_minari, [None, "auto"], sample=False)
    run_table("CartPole-v1", cart, 200_000 // q, args.repeats, False, ["auto"], sample=True)
    frame = lambda: FrameEnv()  # noqa: E731
    run_table("84x84x3 uint8 frames, near-free step", frame, 20_000 // q, args.repeats,
              have_minari and not args.quick, [None, "auto", "lzf"], sample=False, bytes_per_step=84 * 84 * 3,
              plain=True)
    nofsync = {"fsync": False}

    def rec_nofsync():
        path = tempfile.mkdtemp(prefix="aquabench-")
        env = CollectingWrapper(frame(), os.path.join(path, "ds"), compression=None, flush_policy=nofsync)
        return env, lambda: (env.close(), shutil.rmtree(path))

    a, b = zip(*(timed(rec_nofsync, [0] * (20_000 // q), False) for _ in range(args.repeats)))
    print(f"| {'CollectingWrapper (none, fsync=False)':<30} | {statistics.median(a) / (20_000 // q) * 1e6:12.2f} | "
          f"{statistics.median(b) / (20_000 // q) * 1e6:11.2f} |  | "
          f"{(20_000 // q) * 84 * 84 * 3 / statistics.median(b) / 1e9:12.2f} | |")
    slow = lambda: FrameEnv(step_cost_us=20)  # noqa: E731
    run_table("84x84x3 uint8 frames, env step ~20 us (the writer keeps up)", slow, 20_000 // q, args.repeats,
              False, [None], sample=False, bytes_per_step=84 * 84 * 3)
    print(f"\nlzf compression ratio on the frame env: {compression_ratio(frame, 5000 // q, 'lzf'):.1f}x; "
          f"gzip(1): {compression_ratio(frame, 5000 // q, ('gzip', 1)):.1f}x")
    if args.memory:
        print("\n## RSS while recording (MiB)\n| run | steps | RSS after start | RSS max | growth |\n|---|---|---|---|---|")
        memory(cart, 1_000_000 // q, "auto", "CartPole-v1, auto")
        memory(frame, 100_000 // q, None, "84x84x3 frames, uncompressed")


if __name__ == "__main__":
    main()
