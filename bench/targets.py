"""Every performance target of the project in one table: each figure measured side by side with its
baseline in this process, with the target and whether it is met.

Run (from the repository root, in the project's venv; ~4 minutes on a 2-core machine):

    python bench/targets.py              # the figures in the README's Performance section
    python bench/targets.py --quick      # smaller sizes, to check that the script runs

Rows:
    * CartPole-v1, recorded / raw, end to end (``close()`` included), default compression: <= 1.25x.
    * 84x84x3 uint8 frames (near-free env step), ours vs a plain h5py writer thread that also fsyncs at
      close (:class:`bench_record.PlainH5Writer`), both uncompressed, end-to-end throughput: >= 0.85x.
    * Native ``gym.make_vec("CartPole-v1")`` with 16 and 256 sub-envs, recorded / raw, step loop and end
      to end (``close()`` drains what the writer still holds): <= 1.15x.
    * ``ds.sample(256)`` vs a NumPy gather of the same six columns in RAM: >= 0.5x.
    * One ``ds.dataloader(256)`` epoch vs a plain batched ``DataLoader`` over those arrays: >= 0.5x.

Medians of interleaved repeats for the write rows, best of interleaved repeats for the read rows (as in
``bench_record.py`` / ``bench_read.py``, which print the fuller tables). On a shared or virtual 2-core
machine the ratios move by about +-0.1 between runs; run twice before believing a borderline row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_read  # noqa: E402
import bench_record  # noqa: E402

from gym_aquacollect import CollectingVectorWrapper, load_dataset  # noqa: E402

ROWS: list[tuple[str, str, str, str, str]] = []


def add(what: str, ours: str, base: str, ratio: float, target: str, met: bool) -> None:
    ROWS.append((what, ours, base, f"{ratio:.2f}x", f"{target}: {'met' if met else 'NOT met'}"))


def cartpole(steps: int, repeats: int) -> None:
    e2e = bench_record.run_table("CartPole-v1", lambda: gym.make("CartPole-v1"), steps, repeats, False, ["auto"],
                                 sample=False, quiet=True)
    raw, rec = e2e["raw env"], e2e["CollectingWrapper (auto)"]
    add(f"CartPole-v1 {steps:,} steps, recorded / raw, end to end", f"{rec / steps * 1e6:.2f} us/step",
        f"{raw / steps * 1e6:.2f} us/step", rec / raw, "<= 1.25x", rec / raw <= 1.25)


def frames(steps: int, repeats: int) -> None:
    e2e = bench_record.run_table("frames", lambda: bench_record.FrameEnv(), steps, repeats, False, [None],
                                 sample=False, plain=True, quiet=True)
    ours, plain = e2e["CollectingWrapper (none)"], e2e[bench_record.PLAIN]
    gb = 84 * 84 * 3 * steps / 1e9
    add(f"84x84x3 frames {steps:,}, ours vs plain h5py writer thread (both fsync at close)",
        f"{gb / ours:.2f} GB/s", f"{gb / plain:.2f} GB/s", plain / ours, ">= 0.85x", plain / ours >= 0.85)


def vector(n: int, steps: int, repeats: int) -> None:
    actions = [np.random.default_rng(i).integers(0, 2, n) for i in range(64)]

    def run(record: bool) -> tuple[float, float]:
        env = gym.make_vec("CartPole-v1", num_envs=n)
        if record:
            env = CollectingVectorWrapper(env, tempfile.mkdtemp() + "/ds")
        env.reset(seed=0)
        t0 = time.perf_counter()
        for i in range(steps):
            env.step(actions[i % 64])
        t1 = time.perf_counter()
        env.close()
        t2 = time.perf_counter()
        return (t1 - t0) / steps, (t2 - t0) / steps

    raw, rec = [], []
    for _ in range(repeats):  # interleaved
        raw.append(run(False))
        rec.append(run(True))
    r_loop, r_e2e = (statistics.median(x) for x in zip(*raw))
    o_loop, o_e2e = (statistics.median(x) for x in zip(*rec))
    add(f"make_vec CartPole x{n}, {steps:,} steps, recorded / raw, step loop", f"{o_loop * 1e6:.1f} us/step",
        f"{r_loop * 1e6:.1f} us/step", o_loop / r_loop, "<= 1.15x", o_loop / r_loop <= 1.15)
    add(f"make_vec CartPole x{n}, same, end to end (close drains the writer)", f"{o_e2e * 1e6:.1f} us/step",
        f"{r_e2e * 1e6:.1f} us/step", o_e2e / r_e2e, "<= 1.15x", o_e2e / r_e2e <= 1.15)


def reading(steps: int, calls: int, repeats: int, batch: int = 256) -> None:
    root = Path(tempfile.mkdtemp())
    bench_read.record_cartpole(root / "cp", steps)
    ds = load_dataset(root / "cp")
    arrays = ds.transitions()
    n = ds.total_steps
    ds.sample(1)
    r = bench_read.sample_rates(ds, arrays, batch, calls, repeats)
    add(f"ds.sample({batch}) vs NumPy gather of the 6 columns in RAM ({n:,} transitions)",
        f"{r['ours'] / 1e6:.2f}M/s", f"{r['numpy'] / 1e6:.2f}M/s", r["ours"] / r["numpy"], ">= 0.5x",
        r["ours"] / r["numpy"] >= 0.5)

    def epoch(ld):
        return lambda: sum(len(b["reward"]) for b in ld)

    r = bench_read.interleaved({"ours": epoch(ds.dataloader(batch, shuffle=True)),
                                "plain": epoch(bench_read.plain_loader(arrays, batch))}, repeats)
    add(f"ds.dataloader({batch}) epoch vs plain batched DataLoader over the arrays",
        f"{r['ours'] / 1e6:.2f}M/s", f"{r['plain'] / 1e6:.2f}M/s", r["ours"] / r["plain"], ">= 0.5x",
        r["ours"] / r["plain"] >= 0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check that the script runs")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    q = 10 if args.quick else 1
    reps = 1 if args.quick else args.repeats
    cartpole(200_000 // q, reps)
    frames(20_000 // q, reps)
    vector(16, 10_000 // q, reps)
    vector(256, 10_000 // q, reps)
    reading(200_000 // q, 2000 // q, max(1, reps - 2))
    head = ("figure", "ours", "baseline", "ratio", "target")
    widths = [max(len(r[i]) for r in [head, *ROWS]) for i in range(5)]
    print()
    for r in [head, tuple("-" * w for w in widths), *ROWS]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
