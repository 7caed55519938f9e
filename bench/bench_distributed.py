"""Benchmark: distributed collection throughput on Ray vs the same number of plain processes.

Contents:
    * ``ray``:  :func:`gym_aquacollect.distributed.collect_distributed` with 1, 2, 4 workers (Ray already
      running; its start-up is reported separately).
    * ``mp``:   the very same worker code (``_Worker.run``) in ``multiprocessing`` processes (spawn: fresh
      interpreters, like Ray's actor processes), each process its own writer into one dataset directory.
    * ``inproc``: one worker in this process (no process start at all), the floor.

Every configuration records CartPole-v1 with random actions, LZF compression and the workers' default
flush policy (every 5 s), then checks the dataset (total steps, verify_dataset). Throughput is end to end
(actor/process start, env creation, recording, final commit) and steady state is not separated: that is
what a user waits for. Medians of ``--repeats`` runs; runs of the two systems are interleaved.

Ray binds the machine's network address whatever ``ray.init`` is told, so the benchmark runs only in a
network namespace that holds nothing but ``lo``: started elsewhere, it re-runs itself through
``.ci/netns`` (``unshare -n``; needs root); where no namespace can be made it stops with the reason (exit
status 0 locally, 1 when ``CI`` is set).

Run:
    python bench/bench_distributed.py                       # 1, 2, 4 workers, 600k steps per configuration
    python bench/bench_distributed.py --steps 2000000 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gym_aquacollect import load_dataset
from gym_aquacollect.distributed import DEFAULT_WORKER_FLUSH, collect_distributed
from gym_aquacollect.integrations.ray import _split, _Worker
from gym_aquacollect.storage.verify import verify_dataset


class _NoProgress:
    """Stands in for the Ray progress actor in plain processes (same worker code, no Ray)."""

    class _Call:
        def remote(self, *args: object) -> None:
            return None

    register = _Call()
    report = _Call()


def _wrapper_kwargs() -> dict:
    return {"flush_policy": DEFAULT_WORKER_FLUSH, "compression": "lzf", "record_infos": True, "metadata": None}


def _mp_worker(index: int, path: str, steps: int, seed: int) -> None:
    _Worker(index, path, "CartPole-v1", {}, None, seed, _wrapper_kwargs(), _NoProgress()).run(steps)


def run_mp(n: int, steps: int, path: Path) -> float:
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_mp_worker, args=(i, str(path), s, 0)) for i, s in enumerate(_split(steps, n))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t0
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return dt


def run_ray(n: int, steps: int, path: Path, cpus: int) -> float:
    t0 = time.perf_counter()
    result = collect_distributed("CartPole-v1", num_workers=n, steps=steps, path=path, seed=0, progress=False,
                                 num_cpus_per_worker=min(1.0, cpus / n))
    dt = time.perf_counter() - t0
    assert result.ok, result.summary()
    return dt


def run_inproc(steps: int, path: Path) -> float:
    t0 = time.perf_counter()
    _mp_worker(0, str(path), steps, 0)
    return time.perf_counter() - t0


def _check(path: Path, steps: int) -> None:
    assert load_dataset(path).total_steps == steps
    report = verify_dataset(path)
    assert report.ok, report.summary()


NETNS = Path(__file__).resolve().parents[1] / ".ci" / "netns"


def _loopback_only() -> bool:
    """This process's network namespace holds only ``lo``."""
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


def ensure_loopback_namespace() -> None:
    """Re-run this script through ``.ci/netns`` unless already in a loopback-only namespace."""
    if _loopback_only():
        return
    if os.environ.get("AQUACOLLECT_BENCH_NETNS") != "1":
        env = {**os.environ, "AQUACOLLECT_BENCH_NETNS": "1"}
        sys.exit(subprocess.call([str(NETNS), sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env=env))
    ci = (os.environ.get("CI") or "").lower() in ("1", "true", "yes")
    print("bench_distributed: not started: Ray would listen on the machine's network interfaces and no "
          "loopback-only network namespace could be made (see the line above; run as root)", file=sys.stderr)
    sys.exit(1 if ci else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600_000, help="total steps per configuration")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args()
    ensure_loopback_namespace()

    import ray

    cpus = os.cpu_count() or 1
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    rows = []
    try:
        base = []
        for r in range(args.repeats):
            p = tmp / f"inproc-{r}"
            base.append(run_inproc(args.steps, p))
            _check(p, args.steps)
            shutil.rmtree(p)
        inproc = statistics.median(base)
        for n in args.workers:
            times = {"ray": [], "mp": []}
            for r in range(args.repeats):
                for kind in ("ray", "mp") if r % 2 == 0 else ("mp", "ray"):
                    p = tmp / f"{kind}-{n}-{r}"
                    dt = run_ray(n, args.steps, p, cpus) if kind == "ray" else run_mp(n, args.steps, p)
                    _check(p, args.steps)
                    shutil.rmtree(p)
                    times[kind].append(dt)
            t_ray, t_mp = statistics.median(times["ray"]), statistics.median(times["mp"])
            rows.append({"workers": n, "ray_s": t_ray, "mp_s": t_mp, "ray_steps_per_s": args.steps / t_ray,
                         "mp_steps_per_s": args.steps / t_mp, "ray_over_mp_time": t_ray / t_mp})
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nCartPole-v1, {args.steps:,} steps per configuration, {cpus} CPUs ({platform.processor() or platform.machine()}), "
          f"median of {args.repeats}; ray.init took {ray_start:.1f} s (not included)")
    print(f"in-process, 1 worker, no process start: {args.steps / inproc:,.0f} steps/s\n")
    print("| workers | Ray steps/s | multiprocessing steps/s | Ray time / mp time | Ray speed-up vs 1 Ray worker |")
    print("|--------:|------------:|------------------------:|-------------------:|-----------------------------:|")
    one = rows[0]["ray_steps_per_s"]
    for row in rows:
        print(f"| {row['workers']} | {row['ray_steps_per_s']:,.0f} | {row['mp_steps_per_s']:,.0f} | "
              f"{row['ray_over_mp_time']:.2f} | {row['ray_steps_per_s'] / one:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": args.steps, "cpus": cpus, "ray_init_s": ray_start,
                                               "inproc_steps_per_s": args.steps / inproc, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
