"""Image columns as video (VideoCodec) side by side with our gzip and raw storage, in one process.

Run (from the repository root, in the project's venv with ``gym_aquacollect[lerobot]``):

    python bench/bench_video.py            # 84x84x3 Atari-like and 224x224x3 camera-like frames
    python bench/bench_video.py --quick    # fewer frames, for a smoke run

For each frame kind the same deterministic episodes are recorded with ``CollectingWrapper`` into a dataset
per contender: ``raw`` (compression=None), ``gzip`` (our ``"gzip"``, level 4), and ``VideoCodec`` with AV1
(LeRobot's defaults: SVT-AV1 crf 30, a keyframe every 2 frames), H.264 (crf 23, g 2) and FFV1 (lossless).
Reported, as medians over repeats and as ratios to the baselines:

* bytes per frame on disk (and relative to raw, gzip and PNG frames, LeRobot's reference);
* user-thread cost per frame: time of the env loop with the wrapper minus the bare env loop, per frame
  (the writer thread encodes; the loop waits only if the writer falls behind its bounded queue), and the
  ``close()`` time (the writer finishing);
* random-access decode: frames/s reading ``ds[e].observations["camera"][t]`` at random (e, t) through the
  public API, against the same for the gzip column and a one-row read of the gzip HDF5 column;
* mean and max absolute pixel error of the lossy settings.

Figures depend on the frames (synthetic here: sprites on a flat background; a smooth textured scene with
sensor noise) and on the machine; the README reports a run labelled with its conditions.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_aquacollect import CollectingWrapper, VideoCodec, load_dataset


class FramesEnv(gym.Env):
    """Deterministic frames; the observation is ``{"camera": frame}``."""

    def __init__(self, kind: str, episode_length: int) -> None:
        self.kind, self.episode_length = kind, episode_length
        size = 84 if kind == "atari" else 224
        self.observation_space = spaces.Dict({"camera": spaces.Box(0, 255, (size, size, 3), np.uint8)})
        self.action_space = spaces.Discrete(4)
        self.size = size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        self._x, self._y = x, y
        rng = np.random.default_rng(0)
        self._noise = rng.integers(-2, 3, (64, size, size, 3)).astype(np.int16)
        self._tex = (20 * np.sin(x / 3.0) * np.cos(y / 5.0)).astype(np.float32)

    _cache: dict = {}

    def frame(self, ep: int, t: int) -> np.ndarray:
        """Frame ``t`` of episode ``ep`` (made once, then served from a cache: the env step is near-free and
        the recording cost is what the loop measures)."""
        key = (self.kind, ep, t)
        f = self._cache.get(key)
        if f is None:
            f = self._cache[key] = self._make(ep, t)
        return f

    def _make(self, ep: int, t: int) -> np.ndarray:
        s = self.size
        if self.kind == "atari":  # flat background, a paddle, a ball and a score bar: sprite-like
            f = np.full((s, s, 3), (20, 20, 40), np.uint8)
            px = (t * 3 + ep * 11) % (s - 16)
            f[s - 8:s - 5, px:px + 16] = (200, 72, 72)
            bx, by = (t * 5 + ep * 7) % (s - 4), (t * 3 + ep * 5) % (s - 20) + 10
            f[by:by + 4, bx:bx + 4] = (236, 236, 236)
            f[2:6, 4:4 + (t % 60)] = (90, 200, 90)
            return f
        # camera: a smooth lit scene with a textured object moving across it, plus sensor noise
        cx, cy = (s * 0.3 + t * 1.5 + ep * 9) % s, s * 0.5 + 30 * np.sin((t + ep) / 15.0)
        d = np.sqrt((self._x - cx) ** 2 + (self._y - cy) ** 2)
        obj = np.clip(1.0 - d / 40.0, 0, 1)
        base = np.stack([90 + 0.3 * self._x, 110 + 0.2 * self._y, 140 - 0.1 * self._x], -1)
        img = base * (1 - obj[..., None]) + (np.array([200, 120, 60]) + self._tex[..., None]) * obj[..., None]
        return np.clip(img + self._noise[t % 64], 0, 255).astype(np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._ep = int(seed or 0)
        self._t = 0
        return {"camera": self.frame(self._ep, 0)}, {}

    def step(self, action):
        self._t += 1
        return {"camera": self.frame(self._ep, self._t)}, 0.0, False, self._t >= self.episode_length, {}


def contenders() -> dict[str, dict]:
    return {
        "raw": {"compression": None},
        "gzip": {"compression": "gzip"},
        "av1 crf30 g2": {"compression": None, "codecs": {"camera": VideoCodec()}},
        "h264 crf23 g2": {"compression": None, "codecs": {"camera": VideoCodec(vcodec="libx264", crf=23, gop=2)}},
        "ffv1 lossless": {"compression": None, "codecs": {"camera": VideoCodec.lossless()}},
    }


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def run_loop(env: gym.Env, episodes: int) -> float:
    t0 = time.perf_counter()
    for e in range(episodes):
        env.reset(seed=e)
        done = False
        while not done:
            *_, te, tr, _ = env.step(0)
            done = te or tr
    return time.perf_counter() - t0


def png_bytes(frames: list[np.ndarray]) -> float:
    from PIL import Image

    sizes = []
    for f in frames:
        b = io.BytesIO()
        Image.fromarray(f).save(b, format="PNG")
        sizes.append(b.tell())
    return float(np.mean(sizes))


def bench_kind(kind: str, episodes: int, length: int, repeats: int, accesses: int, root: str) -> None:
    frames = episodes * (length + 1)
    print(f"\n== {kind}: {FramesEnv(kind, length).size}x{FramesEnv(kind, length).size}x3, {episodes} episodes x "
          f"{length} steps ({frames} frames), {repeats} repeats ==")
    run_loop(FramesEnv(kind, length), episodes)  # fills the frame cache
    bases: list[float] = []
    results: dict[str, dict] = {}
    for name, kw in contenders().items():
        extra, closes = [], []
        for r in range(repeats):  # the bare loop right before each recorded one: drift on a busy machine cancels
            base_r = run_loop(FramesEnv(kind, length), episodes)
            bases.append(base_r)
            path = os.path.join(root, f"{kind}-{name.replace(' ', '_')}-{r}")
            env = CollectingWrapper(FramesEnv(kind, length), path, **kw)
            extra.append(run_loop(env, episodes) - base_r)
            t0 = time.perf_counter()
            env.close()
            closes.append(time.perf_counter() - t0)
        results[name] = {"path": path, "extra": statistics.median(extra), "close": statistics.median(closes),
                         "bytes": dir_bytes(path) / frames}
    base = statistics.median(bases)
    ref = FramesEnv(kind, length)
    png = png_bytes([ref.frame(e, t) for e in range(min(episodes, 3)) for t in range(0, length + 1, 7)])
    raw_b, gz_b = results["raw"]["bytes"], results["gzip"]["bytes"]
    print(f"bare env loop: {1e6 * base / frames:.1f} us/frame; PNG frames: {png:.0f} B/frame")
    print(f"{'contender':<15} {'B/frame':>9} {'/raw':>7} {'/gzip':>7} {'/png':>7} {'user us/frame':>14} "
          f"{'close s':>8} {'rand frames/s':>14} {'mean err':>9} {'max err':>8}")
    rng = np.random.default_rng(1)
    picks = [(int(rng.integers(episodes)), int(rng.integers(length + 1))) for _ in range(accesses)]
    for name, r in results.items():
        ds = load_dataset(r["path"])
        order = sorted(range(len(ds)), key=lambda i: ds[i].metadata.get("seed", i))
        t0 = time.perf_counter()
        for e, t in picks:
            ds[order[e]].observations["camera"][t]
        fps = accesses / (time.perf_counter() - t0)
        errs = []
        if name not in ("raw", "gzip"):
            for e in range(min(episodes, 3)):
                got = np.asarray(ds[order[e]].observations["camera"]).astype(np.int16)
                want = np.stack([ref.frame(e, t) for t in range(length + 1)]).astype(np.int16)
                errs.append(np.abs(got - want))
        mean_err = f"{np.mean([x.mean() for x in errs]):.2f}" if errs else "exact"
        max_err = f"{max(int(x.max()) for x in errs)}" if errs else "-"
        user = 1e6 * r["extra"] / frames
        print(f"{name:<15} {r['bytes']:>9.0f} {r['bytes'] / raw_b:>7.3f} {r['bytes'] / gz_b:>7.3f} "
              f"{r['bytes'] / png:>7.3f} {user:>14.1f} {r['close']:>8.2f} {fps:>14.0f} {mean_err:>9} {max_err:>8}")
        ds.close()
    # the gzip column read one row at a time at the HDF5 level (one chunk decompressed per frame)
    ds = load_dataset(results["gzip"]["path"])
    reader = ds._readers[0]
    n_rows = reader.columns["obs"]["observations/camera"].shape[0]
    rows = rng.integers(0, n_rows, accesses)
    t0 = time.perf_counter()
    for i in rows:
        reader.read("obs", "observations/camera", int(i), 1)
    print(f"{'gzip row read':<15} one HDF5 row at a time: {accesses / (time.perf_counter() - t0):.0f} frames/s")
    ds.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    os.environ.setdefault("SVT_LOG", "1")
    root = tempfile.mkdtemp(prefix="bench_video-")
    try:
        if args.quick:
            cfg = {"atari": (2, 60), "camera": (2, 40)}
            repeats, accesses = args.repeats or 1, 50
        else:
            cfg = {"atari": (8, 250), "camera": (4, 150)}
            repeats, accesses = args.repeats or 3, 300
        for kind, (eps, length) in cfg.items():
            bench_kind(kind, eps, length, repeats, accesses, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
