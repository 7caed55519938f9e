"""BufferCollector.sample(256) vs Stable-Baselines3's ReplayBuffer.sample(256) on a 1M-transition CartPole buffer.

Both buffers hold the same transitions: CartPole-v1 with random actions, recorded through
``CollectingWrapper(env, collector=BufferCollector(...))``; the SB3 buffer gets the same arrays assigned
directly (its ``add`` is not what is measured). Each row times ``sample(batch)`` in a loop, best of
``--repeats`` runs, in the same process.

Run: ``python bench/bench_buffer.py [--size 1000000] [--batch 256] [--calls 20000]``
(needs ``pip install stable-baselines3``).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from gym_aquacollect import BufferCollector, CollectingWrapper


def fill(size: int, seed: int = 0) -> tuple[BufferCollector, dict[str, np.ndarray], float]:
    buf = BufferCollector(name="bench", save_path=tempfile.mkdtemp(), max_buffer_size=size, compression_enabled=False)
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=buf)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    data = {"obs": np.empty((size, 4), np.float32), "next_obs": np.empty((size, 4), np.float32),
            "action": np.empty(size, np.int64), "reward": np.empty(size, np.float32),
            "terminated": np.empty(size, bool), "truncated": np.empty(size, bool)}
    t0 = time.perf_counter()
    for i in tqdm(range(size), desc="recording CartPole", mininterval=1.0):
        a = int(env.action_space.sample())
        nxt, r, term, trunc, _ = env.step(a)
        data["obs"][i], data["next_obs"][i], data["action"][i] = obs, nxt, a
        data["reward"][i], data["terminated"][i], data["truncated"][i] = r, term, trunc
        obs = env.reset()[0] if term or trunc else nxt
    return buf, data, time.perf_counter() - t0


def sb3_buffer(data: dict[str, np.ndarray]):
    from stable_baselines3.common.buffers import ReplayBuffer

    env = gym.make("CartPole-v1")
    size = len(data["obs"])
    rb = ReplayBuffer(size, env.observation_space, env.action_space, device="cpu", n_envs=1)
    rb.observations[:, 0] = data["obs"]
    rb.next_observations[:, 0] = data["next_obs"]
    rb.actions[:, 0, 0] = data["action"]
    rb.rewards[:, 0] = data["reward"]
    rb.dones[:, 0] = data["terminated"] | data["truncated"]
    rb.timeouts[:, 0] = data["truncated"]
    rb.pos, rb.full = 0, True
    return rb


def rate(fn, batch: int, calls: int, repeats: int) -> float:
    for _ in range(200):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - t0)
    return batch * calls / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    buf, data, t_fill = fill(args.size)
    assert len(buf) == args.size
    print(f"recorded {args.size} CartPole transitions into BufferCollector in {t_fill:.1f} s "
          f"({args.size / t_fill:,.0f} steps/s including the env)")
    # sanity: what we sample is what was recorded
    b = buf.sample(8, seed=0)
    idx = {o.tobytes() + n.tobytes() for o, n in zip(data["obs"], data["next_obs"])}
    assert all(o.tobytes() + n.tobytes() in idx for o, n in zip(b["obs"], b["next_obs"]))

    rows = []
    try:
        rb = sb3_buffer(data)
        sb3 = rate(lambda: rb.sample(args.batch), args.batch, args.calls, args.repeats)
        rows.append(("SB3 ReplayBuffer.sample (torch, cpu)", sb3))
    except ImportError:
        sb3 = None
        print("stable-baselines3 is not installed: pip install stable-baselines3")
    rows.append(("BufferCollector.sample (numpy)", rate(lambda: buf.sample(args.batch), args.batch, args.calls,
                                                       args.repeats)))
    rows.append(("BufferCollector.sample (as_torch, cpu)",
                 rate(lambda: buf.sample(args.batch, as_torch=True, device="cpu"), args.batch, args.calls,
                      args.repeats)))
    buf.end_collection()

    print(f"\nsample({args.batch}) from {args.size:,} transitions, best of {args.repeats} x {args.calls} calls")
    print(f"{'buffer':42s} {'samples/s':>14s} {'us/call':>9s} {'vs SB3':>7s}")
    for name, r in rows:
        ratio = f"{r / sb3:6.2f}x" if sb3 else "   n/a"
        print(f"{name:42s} {r:14,.0f} {args.batch / r * 1e6:9.1f} {ratio}")


if __name__ == "__main__":
    main()
