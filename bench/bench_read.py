"""Reading for training, side by side in one process: ``Dataset.sample`` / ``dataloader`` / streaming
against plain NumPy and PyTorch over the same arrays held in RAM, TorchRL's memory-mapped replay buffer
and Minari's ``sample_episodes``; 84x84x3 frames (compressed and not) in frames/s.

Data: CartPole-v1 with random actions recorded through ``CollectingWrapper`` (default compression),
``--steps`` steps; the in-RAM baselines hold ``ds.transitions()`` (the same six columns). Every figure is
the best of ``--repeats`` interleaved runs. Ratios are ours / baseline as throughput (higher is better).

Run: ``python bench/bench_read.py [--steps 200000] [--frames 20000] [--repeats 3] [--quick]``
(TorchRL and Minari rows need ``pip install torchrl==0.14.1 tensordict==0.14.3`` and ``minari``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tqdm import tqdm

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.dataset import Episode

ROWS: list[tuple[str, str, str, str, str]] = []  # what, ours, baseline, ratio, target


def best(fn: Callable[[], int], repeats: int) -> float:
    """Best items/s of ``fn`` (which returns how many items it produced) over ``repeats`` runs."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def interleaved(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            out[k].append(best(fn, 1))
    return {k: max(v) for k, v in out.items()}


def row(what: str, ours: float, base: float | None, unit: str, target: float | None = None) -> None:
    ratio = f"{ours / base:.2f}x" if base else ""
    tgt = ""
    if target is not None and base:
        tgt = f">= {target}x: {'met' if ours / base >= target else 'NOT met'}"
    ROWS.append((what, f"{ours:,.0f} {unit}", f"{base:,.0f} {unit}" if base else "", ratio, tgt))


# -- data --------------------------------------------------------------------------------------------
def record_cartpole(path: Path, steps: int) -> None:
    env = CollectingWrapper(gym.make("CartPole-v1"), path)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in tqdm(range(steps), desc="recording CartPole", mininterval=1.0):
        *_, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.close()


class FrameEnv(gym.Env):
    """84x84x3 uint8 frames: a moving bright square on a dim background, 500-step episodes."""

    observation_space = spaces.Box(0, 255, (84, 84, 3), np.uint8)
    action_space = spaces.Discrete(4)

    def __init__(self) -> None:
        self.frame = np.full((84, 84, 3), 30, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame, {}

    def step(self, action):
        self.t += 1
        x = self.t % 76
        self.frame[:] = 30
        self.frame[x:x + 8, x:x + 8, :] = 220
        return self.frame, 0.0, False, self.t >= 500, {}


def record_frames(path: Path, frames: int, compression) -> None:
    env = CollectingWrapper(FrameEnv(), path, compression=compression)
    env.reset(seed=0)
    for i in range(frames):
        *_, term, trunc, _ = env.step(i % 4)
        if term or trunc:
            env.reset()
    env.close()


# -- baselines ---------------------------------------------------------------------------------------
class ArrayBatches:
    """The plain batched map-style dataset: ``self[list_of_ints]`` indexes torch tensors held in RAM."""

    def __init__(self, tensors: dict) -> None:
        self.t = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx):
        return {k: v[idx] for k, v in self.t.items()}


class PermBatches:
    """A sampler yielding one slice of ``torch.randperm(n)`` per batch (an index tensor, no Python lists)."""

    def __init__(self, n: int, batch: int) -> None:
        self.n, self.batch = n, batch

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __iter__(self):
        import torch

        return iter(torch.randperm(self.n).split(self.batch))


def plain_loader(arrays: dict, batch: int, tensor_index: bool = False):
    """The plain batched DataLoader over tensors in RAM: ``BatchSampler(RandomSampler)`` lists of ints, or
    (``tensor_index``) slices of ``torch.randperm`` (the fastest plain variant we know)."""
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    ds = ArrayBatches(tensors)
    sampler = PermBatches(ds.n, batch) if tensor_index else BatchSampler(RandomSampler(range(ds.n)), batch, False)
    return DataLoader(ds, sampler=sampler, batch_size=None, collate_fn=lambda b: b)


def h5_sequential_read(ds) -> int:
    """Read every column of every shard once, in order (what a disk-speed stream must do); bytes."""
    nbytes = 0
    for r in ds._readers:
        for kind in ("obs", "step"):
            for h5 in r.columns[kind].values():
                if h5.dtype.kind == "O":
                    continue
                step = max(1, h5.chunks[0] * max(1, (32 << 20) // max(1, h5.chunks[0] * h5.dtype.itemsize
                                                                       * int(np.prod(h5.shape[1:])))))
                for s in range(0, h5.shape[0], step):
                    nbytes += h5[s:s + step].nbytes
    return nbytes


# -- sections ----------------------------------------------------------------------------------------
def sample_rates(ds, arrays: dict, batch: int, calls: int, repeats: int) -> dict[str, float]:
    """Transitions/s of ``ds.sample(batch)`` ("ours") and of a NumPy gather of ``arrays`` ("numpy")."""
    n = ds.total_steps
    rng = np.random.default_rng(0)
    cols = list(arrays.items())

    def numpy_gather() -> int:
        for _ in range(calls):
            idx = rng.integers(0, n, batch)
            {k: a[idx] for k, a in cols}
        return calls * batch

    def ours_sample() -> int:
        for _ in range(calls):
            ds.sample(batch)
        return calls * batch

    return interleaved({"ours": ours_sample, "numpy": numpy_gather}, repeats)


def cartpole_section(path: Path, batch: int, calls: int, repeats: int, minari_episodes: int) -> None:
    ds = load_dataset(path)
    n = ds.total_steps
    t0 = time.perf_counter()
    ds.transition_store().load()
    build = time.perf_counter() - t0
    arrays = ds.transitions()
    row("decode whole dataset into the cache (first use)", n / build, None, "transitions/s")

    r = sample_rates(ds, arrays, batch, calls, repeats)
    row(f"ds.sample({batch}) vs numpy gather of the 6 columns in RAM", r["ours"], r["numpy"], "transitions/s", 0.5)

    loader = ds.dataloader(batch, shuffle=True)
    plain = plain_loader(arrays, batch)

    def epoch(ld) -> Callable[[], int]:
        return lambda: sum(len(b["reward"]) for b in ld)

    perm = plain_loader(arrays, batch, tensor_index=True)
    r = interleaved({"ours": epoch(loader), "plain": epoch(plain), "perm": epoch(perm)}, repeats)
    row(f"ds.dataloader({batch}) epoch vs plain batched DataLoader (BatchSampler lists) over the arrays",
        r["ours"], r["plain"], "transitions/s", 0.5)
    row(f"ds.dataloader({batch}) epoch vs plain batched DataLoader (torch.randperm slices) over the arrays",
        r["ours"], r["perm"], "transitions/s", 0.5)
    plain_rate = r["plain"]
    r2 = best(epoch(ds.dataloader(batch, shuffle=True, num_workers=2)), max(1, repeats - 1))
    row(f"ds.dataloader({batch}, num_workers=2) epoch", r2, plain_rate, "transitions/s")

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    per_item = DataLoader(TensorDataset(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays.values()]),
                          batch_size=batch, shuffle=True)
    k = min(n, 50 * batch)

    def first_k(ld) -> Callable[[], int]:
        def go() -> int:
            got = 0
            for b in ld:
                got += len(b[0] if isinstance(b, (list, tuple)) else b["reward"])
                if got >= k:
                    break
            return got
        return go

    row("  (context) per-item TensorDataset DataLoader, shuffle=True", best(first_k(per_item), 1), plain_rate,
        "transitions/s")
    old = DataLoader(ds.as_torch_dataset(), batch_size=batch, shuffle=True)
    row("  (context) ds.as_torch_dataset() per-item DataLoader", best(first_k(old), 1), plain_rate, "transitions/s")

    # streaming: nothing cached (small rows: bound by per-batch work, like the cached epoch)
    sds = load_dataset(path, cache_bytes=0)
    sload = sds.dataloader(batch, shuffle=True)
    r = interleaved({"stream": epoch(sload), "cached": epoch(loader)}, repeats)
    row("streaming epoch (cache_bytes=0) vs the cached ds.dataloader epoch", r["stream"], r["cached"],
        "transitions/s")
    row("ds.sample(256) from disk (cache_bytes=0)", best(lambda: sum(len(sds.sample(batch)["reward"])
                                                                     for _ in range(20)), 1), None, "transitions/s")

    # ds[0].observations[i] in a loop (issue 11: 58 ms per call before)
    ep_len = len(ds[0])

    def frame_loop_now() -> int:
        for i in range(200):
            ds[0].observations[i % ep_len]
        return 200

    ref0 = ds._refs[0]

    def frame_loop_before() -> int:  # a new Episode per call: decode it whole each time
        for i in range(20):
            Episode(ds, 0, ref0).observations[i % ep_len]
        return 20

    r = interleaved({"now": frame_loop_now, "before": frame_loop_before}, repeats)
    row("ds[0].observations[i] in a loop, calls/s (vs a fresh Episode per call)", r["now"], r["before"], "calls/s")

    torchrl_rows(arrays, batch, calls, repeats)
    minari_rows(ds, minari_episodes, repeats)


def torchrl_rows(arrays: dict, batch: int, calls: int, repeats: int) -> None:
    try:
        import torch
        import torchrl
        from tensordict import TensorDict
        from torchrl.data import LazyMemmapStorage, ReplayBuffer
    except ImportError as e:
        ROWS.append(("TorchRL ReplayBuffer(LazyMemmapStorage)", f"not installed ({e})", "", "", ""))
        return
    n = len(arrays["reward"])
    td = TensorDict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, batch_size=[n])
    with tempfile.TemporaryDirectory() as scratch:
        rb = ReplayBuffer(storage=LazyMemmapStorage(n, scratch_dir=scratch), batch_size=batch)
        rb.extend(td)
        ds_rate = ROWS_RATES.get("sample")

        def trl() -> int:
            for _ in range(calls // 4):
                rb.sample()
            return calls // 4 * batch

        rate = best(trl, repeats)
        row(f"TorchRL {torchrl.__version__} ReplayBuffer(LazyMemmapStorage).sample() [{batch}] (ours: ds.sample)",
            ds_rate or 0, rate, "transitions/s")


ROWS_RATES: dict[str, float] = {}


def minari_rows(ds, n_episodes: int, repeats: int) -> None:
    try:
        import minari

        from gym_aquacollect.formats.minari import write_minari
    except ImportError as e:
        ROWS.append(("Minari sample_episodes", f"not installed ({e})", "", "", ""))
        return
    root = tempfile.mkdtemp()
    n_eps = min(len(ds), n_episodes)
    sub = ds.filter_episodes(lambda e: e.id < n_eps)
    write_minari(sub, root, "bench/cartpole-v0")
    os.environ["MINARI_DATASETS_PATH"] = root
    mds = minari.load_dataset("bench/cartpole-v0")
    k = 32

    def theirs() -> int:
        return sum(len(e.rewards) for _ in range(5) for e in mds.sample_episodes(k))

    def ours() -> int:
        got = 0
        for _ in range(5):
            for e in sub.sample_episodes(k):
                _ = (e.observations, e.actions, e.terminations, e.truncations)
                got += len(e.rewards)
        return got

    r = interleaved({"ours": ours, "minari": theirs}, repeats)
    row(f"ds.sample_episodes({k}) + fields vs Minari {minari.__version__} sample_episodes({k})", r["ours"],
        r["minari"], "transitions/s")


def frames_section(root: Path, frames: int, batch: int, repeats: int) -> None:
    for label, comp in (("raw", None), ("deflate-1 ('auto')", "auto")):
        path = root / f"frames-{comp}"
        record_frames(path, frames, comp)
        frames_rows(path, label, batch, repeats)


def frames_rows(path: Path, label: str, batch: int, repeats: int) -> None:
    ds = load_dataset(path)
    t0 = time.perf_counter()
    ds.transition_store().load()
    row(f"frames {label}: decode into the cache", ds.total_steps / (time.perf_counter() - t0), None, "frames/s")
    cols = list(ds.transitions().items())
    n = ds.total_steps
    rng = np.random.default_rng(0)
    calls = 200

    def gather() -> int:
        for _ in range(calls):
            idx = rng.integers(0, n, batch)
            {k: a[idx] for k, a in cols}
        return calls * batch

    def ours() -> int:
        for _ in range(calls):
            ds.sample(batch)
        return calls * batch

    r = interleaved({"ours": ours, "numpy": gather}, repeats)
    row(f"frames {label}: ds.sample({batch}) vs numpy gather of the 6 columns in RAM", r["ours"], r["numpy"],
        "transitions/s", 0.5)
    row(f"frames {label}: ds.dataloader({batch}) epoch", best(lambda: sum(len(b["reward"]) for b in
                                                                          ds.dataloader(batch)), repeats),
        None, "frames/s")
    sds = load_dataset(path, cache_bytes=0)
    r = interleaved({"stream": lambda: sum(len(b["reward"]) for b in sds.dataloader(batch)),
                     "h5": lambda: h5_sequential_read(sds) // (84 * 84 * 3)}, repeats)
    row(f"frames {label}: streaming epoch (cache_bytes=0) vs h5py sequential read of the shards", r["stream"],
        r["h5"], "frames/s")
    row(f"frames {label}: ds.sample({batch}) from disk (cache_bytes=0)",
        best(lambda: sum(len(sds.sample(batch)["reward"]) for _ in range(3)), 1), None, "frames/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--minari-episodes", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.frames, args.calls, args.repeats, args.minari_episodes = 20_000, 2000, 200, 1, 200
    root = Path(tempfile.mkdtemp())
    record_cartpole(root / "cp", args.steps)
    # ds.sample's rate for the TorchRL row
    ds = load_dataset(root / "cp")
    ds.sample(1)
    ROWS_RATES["sample"] = best(lambda: sum(len(ds.sample(args.batch)["reward"]) for _ in range(args.calls)),
                                args.repeats)
    cartpole_section(root / "cp", args.batch, args.calls, args.repeats, args.minari_episodes)
    frames_section(root, args.frames, args.batch, args.repeats)
    print(f"\nReading for training: CartPole-v1 {args.steps:,} steps, {args.frames:,} frames of 84x84x3, "
          f"batch {args.batch}, best of {args.repeats}")
    head = ("what", "ours", "baseline", "ratio", "target")
    widths = [max(len(r[i]) for r in [head, *ROWS]) for i in range(5)]
    for r in [head, tuple("-" * w for w in widths), *ROWS]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
