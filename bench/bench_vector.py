"""Recorded vs raw step time for vector envs, side by side in one process.

Contents: CartPole (native ``gym.make_vec`` and ``SyncVectorEnv``) with 16 and 256 sub-envs, interleaved
repeats of raw and recorded loops, medians and ratios (target: recorded <= 1.15x raw); the fake Isaac Lab
env with 4096 sub-envs and a 64-float obs on CPU (steps/s raw vs recorded).

Run: ``python bench/bench_vector.py [--steps N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingVectorWrapper


def _loop(env, steps, actions):
    env.reset(seed=0)
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % len(actions)])
    return (time.perf_counter() - t0) / steps


COMPRESSION: object = "auto"


def bench_cartpole(kind: str, n: int, steps: int, repeats: int) -> tuple[float, float]:
    def make():
        if kind == "native":
            return gym.make_vec("CartPole-v1", num_envs=n)
        return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync")

    actions = [np.random.default_rng(i).integers(0, 2, n) for i in range(64)]
    raw, rec = [], []
    for r in range(repeats):  # interleaved
        env = make()
        raw.append(_loop(env, steps, actions))
        env.close()
        d = tempfile.mkdtemp()
        env = CollectingVectorWrapper(make(), f"{d}/r{r}", compression=COMPRESSION)
        rec.append(_loop(env, steps, actions))
        env.close()
    return statistics.median(raw), statistics.median(rec)


def bench_isaac(steps: int, repeats: int) -> tuple[float, float]:
    import torch

    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeIsaacLabEnv, FakeSceneCfg

    def make():
        return FakeIsaacLabEnv(FakeEnvCfg(scene=FakeSceneCfg(num_envs=4096), obs_dim=64, action_dim=8,
                                          terminate_schedule=0.01, seed=0, record_ground_truth=False,
                                          compute_final_obs=True))

    actions = [torch.zeros(4096, 8)]
    raw, rec = [], []
    for r in range(repeats):
        env = make()
        raw.append(_loop(env, steps, actions))
        env.close()
        d = tempfile.mkdtemp()
        env = CollectingVectorWrapper(make(), f"{d}/i{r}", compression=None)
        rec.append(_loop(env, steps, actions))
        env.close()
    return statistics.median(raw), statistics.median(rec)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--compression", default="auto", help="auto (the default, as the wrappers), none, lzf or gzip")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--isaac-steps", type=int, default=400)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads for the Isaac case (0: torch's default). On a 2-core machine "
                        "torch's OpenMP workers and the writer thread compete; 1 is faster for both raw and recorded")
    a = p.parse_args()
    global COMPRESSION
    COMPRESSION = None if a.compression == "none" else a.compression
    if a.torch_threads:
        import torch

        torch.set_num_threads(a.torch_threads)
    print(f"{'env':34} {'raw us/step':>12} {'rec us/step':>12} {'ratio':>7}  target")
    for kind in ("native", "sync"):
        for n in (16, 256):
            raw, rec = bench_cartpole(kind, n, a.steps if kind == "native" else a.steps // 4, a.repeats)
            ok = "met" if rec / raw <= 1.15 else "NOT met"
            print(f"{f'CartPole {kind} x{n}':34} {raw * 1e6:12.1f} {rec * 1e6:12.1f} {rec / raw:7.3f}  <=1.15 {ok}")
    raw, rec = bench_isaac(a.isaac_steps, max(1, a.repeats // 2))
    print(f"{'FakeIsaacLab x4096, 64-float obs':34} {raw * 1e6:12.1f} {rec * 1e6:12.1f} {rec / raw:7.3f}  "
          f"(steps/s raw {1 / raw:.0f}, recorded {1 / rec:.0f}; sub-env steps/s recorded {4096 / rec:.3g})")


if __name__ == "__main__":
    main()
