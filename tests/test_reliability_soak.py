"""Soak: a long CartPole recording with resident memory and open file handles flat.

Fast mode records 300k steps; soak mode (``--soak`` / ``AQUACOLLECT_SOAK=1``) records 10M steps.
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import psutil
from reliability_child import report_figures

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.storage.verify import verify_dataset


def test_soak_rss_and_file_handles_flat(tmp_path: Path, soak: bool) -> None:
    total = 10_000_000 if soak else 300_000
    sample_every = total // 20
    proc = psutil.Process()
    path = tmp_path / "soak"
    samples: list[tuple[int, float, int]] = []
    env = CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy={"every_steps": 50_000, "every_seconds": None})
    t0 = time.perf_counter()
    env.reset(seed=0)
    space = env.action_space
    space.seed(0)
    for i in range(1, total + 1):
        *_, term, trunc, _ = env.step(i % 2 if i % 7 else 1 - i % 2)
        if term or trunc:
            env.reset()
        if i % sample_every == 0:
            samples.append((i, proc.memory_info().rss / 2**20, proc.num_fds()))
    env.close()
    seconds = time.perf_counter() - t0
    warm = samples[len(samples) // 4]  # after buffers, caches and pools filled
    last = samples[-1]
    rss_growth = max(s[1] for s in samples[len(samples) // 4:]) - warm[1]
    fds = {s[2] for s in samples[len(samples) // 4:]}
    ds = load_dataset(path)
    assert ds.total_steps == total
    report = verify_dataset(path)
    assert report.ok, report.summary()
    report_figures("soak", {"steps": total, "seconds": round(seconds, 1), "steps_per_s": round(total / seconds),
                            "rss_mb_after_warmup": round(warm[1], 1), "rss_mb_end": round(last[1], 1),
                            "rss_growth_mb": round(rss_growth, 1), "open_fds": sorted(fds),
                            "shards": report.shards_checked, "dataset_mb": round(report.bytes_checked / 1e6, 1)})
    assert rss_growth < 40, f"RSS grew {rss_growth:.1f} MB after warm-up: {samples}"
    assert max(fds) - min(fds) <= 2, f"open file handles vary: {samples}"
