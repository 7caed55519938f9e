"""Soak: a long CartPole recording with resident memory and open file handles flat.

Fast mode records 300k steps; soak mode (``--soak`` / ``AQUACOLLECT_SOAK=1``) records 10M steps.

What "flat" means, and the bound asserted: after warm-up (the first quarter), resident memory grows only
in proportion to the episodes recorded since. The collector keeps per finished episode, for its
statistics, three list slots, a float return and an int length (~76 B); measured over 10M CartPole steps,
RSS grew 74 B per episode in a plain process and 148-190 B per episode inside this test (two runs; the
rest is not explained by the lists; it comes in steps rather than a line, probably allocator
fragmentation, not yet investigated). The test allows ``PER_EPISODE_BYTES`` per episode recorded after
warm-up plus ``ALLOCATOR_SLACK_MB``: ~1.6x the worst measured rate, while a real leak of a step's data
(~50 B per step, ~1.5 KB per episode) or of a block or shard would exceed it several times over. The writer is drained (``flush``) before each sample, so the pending-block queue (up to
``max_pending_bytes``) is not mistaken for growth.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import gymnasium as gym
import psutil
from reliability_child import report_figures

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.storage.verify import verify_dataset

PER_EPISODE_BYTES = 300  # measured 74-190 B per episode over 10M steps (see above), with a margin
ALLOCATOR_SLACK_MB = 6.0  # malloc arenas of the user, writer and finisher threads; HDF5's free lists


def test_soak_rss_and_file_handles_flat(tmp_path: Path, soak: bool) -> None:
    total = 10_000_000 if soak else 300_000
    sample_every = total // 20
    proc = psutil.Process()
    path = tmp_path / "soak"
    samples: list[tuple[int, float, int, int]] = []
    episodes = 0
    env = CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy={"every_steps": 50_000, "every_seconds": None})
    t0 = time.perf_counter()
    env.reset(seed=0)
    space = env.action_space
    space.seed(0)
    for i in range(1, total + 1):
        *_, term, trunc, _ = env.step(i % 2 if i % 7 else 1 - i % 2)
        if term or trunc:
            env.reset()
            episodes += 1
        if i % sample_every == 0:
            env.flush()
            gc.collect()  # what earlier tests left for the collector (open files among it) goes first
            samples.append((i, proc.memory_info().rss / 2**20, proc.num_fds(), episodes))
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
                            "rss_growth_mb": round(rss_growth, 1),
                            "episodes_after_warmup": last[3] - warm[3], "open_fds": sorted(fds),
                            "shards": report.shards_checked, "dataset_mb": round(report.bytes_checked / 1e6, 1)})
    allowed = (last[3] - warm[3]) * PER_EPISODE_BYTES / 2**20 + ALLOCATOR_SLACK_MB
    assert rss_growth <= allowed, (f"RSS grew {rss_growth:.1f} MB after warm-up over {last[3] - warm[3]} episodes "
                                   f"(allowed {allowed:.1f} MB): {samples}")
    # a leak grows the count; in a full test run, objects other tests left behind may close theirs meanwhile
    assert max(fds) <= warm[2] + 2, f"open file handles grow: {samples}"
