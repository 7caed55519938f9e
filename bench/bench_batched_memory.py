"""Peak memory while recording the batched (Isaac Lab) path when the writer cannot keep up.

Contents: the fake Isaac Lab env (``gym_aquacollect.testing``) with 256 sub-envs and a 64x64x3 camera
(3 MiB of frames per step), gzip compression (slower than the env: the writer lags). Each mode runs in a
fresh child process and reports its peak RSS (``ru_maxrss``): ``raw`` steps the env only (the baseline),
``recorded`` steps it inside ``CollectingVectorWrapper``. Also printed: the most bytes that waited for
the writer (``writer.pending.peak``) against ``max_pending_bytes``, and how often the env waited.
Before issue 9 the recorded run grew by ~4 GB in 400 steps (a new chunk per hand-over, never bounded).

Run: ``python bench/bench_batched_memory.py [--envs 256] [--steps 400] [--compression gzip]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def child(mode: str, envs: int, steps: int, compression: str) -> dict:
    import gymnasium as gym
    import torch

    from gym_aquacollect import CollectingVectorWrapper, load_dataset
    from gym_aquacollect.collectors import RLCollector
    from gym_aquacollect.testing.fake_isaaclab import FakeEnvCfg, FakeSceneCfg

    cfg = FakeEnvCfg(scene=FakeSceneCfg(num_envs=envs), image_obs=(64, 64), record_ground_truth=False,
                     terminate_schedule=0.01, seed=0)
    env = gym.make("Isaac-Fake-v0", cfg=cfg)
    out: dict = {"mode": mode}
    col = None
    if mode == "recorded":
        path = tempfile.mkdtemp() + "/mem"
        col = RLCollector(dataset_path=path, compression=compression)
        env = CollectingVectorWrapper(env, collector=col)
    action = torch.zeros(envs, 2)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    out["step_seconds"] = time.perf_counter() - t0
    if col is not None:
        budget = getattr(col.writer, "pending", None)  # absent before issue 9
        if budget is not None:
            out.update(pending_peak_mb=budget.peak / 2**20, cap_mb=budget.cap / 2**20, waits=budget.waits)
        env.close()
        out["stored_steps"] = load_dataset(path).total_steps
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--compression", default="gzip")
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.envs, a.steps, a.compression)))
        return
    res = {}
    for mode in ("raw", "recorded"):
        p = subprocess.run([sys.executable, __file__, "--child", mode, "--envs", str(a.envs), "--steps", str(a.steps),
                            "--compression", a.compression], capture_output=True, text=True, check=True)
        res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    raw, rec = res["raw"], res["recorded"]
    frames_mb = a.envs * 64 * 64 * 3 * a.steps / 2**20
    print(f"{a.envs} envs x 64x64x3 camera, {a.steps} steps ({frames_mb:.0f} MB of frames), {a.compression}")
    print(f"peak RSS raw      {raw['peak_rss_mb']:8.0f} MB")
    print(f"peak RSS recorded {rec['peak_rss_mb']:8.0f} MB  (+{rec['peak_rss_mb'] - raw['peak_rss_mb']:.0f} MB, "
          f"ratio {rec['peak_rss_mb'] / raw['peak_rss_mb']:.2f}x)")
    if "pending_peak_mb" in rec:
        print(f"pending for the writer: peak {rec['pending_peak_mb']:.1f} MB (cap {rec['cap_mb']:.0f} MB); "
              f"the env waited {rec['waits']} times")
    print(f"{rec['stored_steps']} steps stored")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
