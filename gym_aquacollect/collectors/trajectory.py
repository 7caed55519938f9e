"""TrajectoryCollector: whole episodes, written only when they pass the filter (or make the top k).

Contents:
    * :class:`TrajectoryCollector` - holds each episode's rows in memory until it ends, checks it against
      ``trajectory_filter_criteria`` (:mod:`gym_aquacollect.collectors.filters`) and hands accepted
      episodes to the writer thread as one block each; keeps statistics of what was kept and rejected.

Recording itself is :class:`~gym_aquacollect.collectors.BaseCollector`'s (same validation, same blocks):
only where the blocks go differs. Episodes not yet decided live in memory only, so a crash loses them.
With vector envs (``batched_mode = "episodes"``) the batched recorder holds each sub-env episode in the
writer thread until it ends; :meth:`TrajectoryCollector.on_finished_episodes` then checks the numeric
criteria vectorised over the finished episodes, asks the predicate per remaining episode, and writes or
holds (top-k) what is kept.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gym_aquacollect.collectors.base import BaseCollector
from gym_aquacollect.collectors.filters import TrajectoryFilter
from gym_aquacollect.schema.columns import concat_columns
from gym_aquacollect.schema.flags import TERM as _TERM
from gym_aquacollect.schema.flags import TRUNC as _TRUNC
from gym_aquacollect.storage.writer import Block, EpisodeEnd, Piece

__all__ = ["TrajectoryCollector"]


def _describe(a: list[float]) -> dict[str, float]:
    if not a:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    x = np.asarray(a, dtype=np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


class TrajectoryCollector(BaseCollector):
    """Record whole episodes and keep only those that pass ``trajectory_filter_criteria``.

    Example:
        >>> import tempfile, gymnasium as gym
        >>> from gym_aquacollect import CollectingWrapper, TrajectoryCollector, load_dataset
        >>> c = TrajectoryCollector(name="long", save_path=tempfile.mkdtemp(),
        ...                         trajectory_filter_criteria={"min_length": 15})
        >>> with CollectingWrapper(gym.make("CartPole-v1"), collector=c) as env:
        ...     _ = env.reset(seed=0)
        ...     for _ in range(300):
        ...         *_, term, trunc, _ = env.step(env.action_space.sample())
        ...         if term or trunc:
        ...             _ = env.reset()
        >>> ds = load_dataset(c.dataset_path)
        >>> bool(ds.episode_lengths.min() >= 15)
        True
        >>> st = c.get_trajectory_statistics()
        >>> st["total_trajectories"] == len(ds), st["rejected_trajectories"] == st["rejection_reasons"]["min_length"]
        (True, True)

    Args:
        name, save_path: the dataset goes to ``save_path/name``.
        enable_trajectory_filtering: when False every finished episode is kept (criteria ignored).
        trajectory_filter_criteria: ``min_reward``, ``max_reward``, ``min_length``, ``max_length``,
            ``allowed_completion_types`` (``"done"``/``"truncated"``), ``predicate`` (see
            :mod:`gym_aquacollect.collectors.filters`).
        predicate: a user predicate ``predicate(trajectory: dict) -> bool`` (same as the criteria key).
        keep_top_k: keep only the ``k`` accepted episodes with the highest returns; they are held in
            memory and written at :meth:`end_collection` in the order they finished (ties: the earlier
            episode stays).
        **kwargs: see :class:`~gym_aquacollect.collectors.BaseCollector` (``schedule``, callbacks, ...).
    """

    batched_mode = "episodes"

    def __init__(
        self,
        name: str = "trajectory_collector",
        save_path: str | Path | None = None,
        enable_trajectory_filtering: bool = True,
        trajectory_filter_criteria: dict[str, Any] | None = None,
        *,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        keep_top_k: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, save_path, **kwargs)
        self.enable_trajectory_filtering = bool(enable_trajectory_filtering)
        self.trajectory_filter_criteria = dict(trajectory_filter_criteria or {})
        self.filter = TrajectoryFilter(self.trajectory_filter_criteria, predicate)
        if keep_top_k is not None and int(keep_top_k) < 1:
            raise ValueError(f"keep_top_k must be >= 1 or None, got {keep_top_k}")
        self.keep_top_k = None if keep_top_k is None else int(keep_top_k)
        self._pending: dict[int, list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, int]]] = {}
        self._held: list[tuple[float, int, EpisodeEnd, Block]] = []  # min-heap (return, -order) for top-k
        self._order = 0
        self.rejection_reasons: Counter[str] = Counter()
        self.rejected_lengths: list[int] = []
        self.rejected_returns: list[float] = []
        self._lock = threading.Lock()  # the writer thread decides vector episodes while the user reads statistics

    # -- hooks into BaseCollector --------------------------------------------------------------------------
    def on_episode_end(self, end: EpisodeEnd) -> None:
        # statistics are kept for *accepted* episodes (see _write); the end still travels with the block
        self._ends.append(end)

    def _finish_episode(self, terminated: bool, truncated: bool, interrupted: str | None = None) -> None:
        super()._finish_episode(terminated, truncated, interrupted)
        self._handoff()  # decide now (cheap when the base already handed the rows over)

    def on_block(self, block: Block) -> None:
        for p in block.pieces:
            obs = {k: v[p.obs_start:p.obs_start + p.obs_n].copy() for k, v in block.obs.items()}
            step = {k: v[p.step_start:p.step_start + p.step_n].copy() for k, v in block.step.items()}
            self._pending.setdefault(p.key, []).append((obs, step, p.obs_n, p.step_n))
        if block.on_written is not None:  # the block's arrays are free again: we hold copies
            block.on_written()
        for end in block.ends:
            self._decide(end, self._pending.pop(end.key, []))

    def finalize(self) -> None:
        """Write the top-k episodes still held (in the order they finished), then close the dataset."""
        held = sorted(self._held, key=lambda h: -h[1])  # finish order
        self._held = []
        for _, _, end, block in held:
            self._write(end, block)
        super().finalize()

    # -- deciding ----------------------------------------------------------------------------------------
    def _trajectory(self, end: EpisodeEnd, obs: dict[str, np.ndarray], step: dict[str, np.ndarray]) -> dict[str, Any]:
        return {
            "observations": self._obs_codec.read([obs[n] for n in self._obs_names]),
            "actions": self._act_codec.read([step[n] for n in self._act_names]),
            "rewards": step["rewards"],
            "terminations": step["terminations"],
            "truncations": step["truncations"],
            "length": end.length,
            "return": end.ret,
            "metadata": end.meta,
        }

    def _decide(self, end: EpisodeEnd, chunks: list[tuple[dict, dict, int, int]]) -> None:
        n_obs = sum(c[2] for c in chunks)
        n_step = sum(c[3] for c in chunks)
        obs = concat_columns([c[0] for c in chunks], [c[2] for c in chunks])
        step = concat_columns([c[1] for c in chunks], [c[3] for c in chunks])
        if n_step != end.length or n_obs != end.length + 1:  # pragma: no cover - an internal invariant
            raise RuntimeError(f"TrajectoryCollector: episode {end.key} has {n_obs} obs / {n_step} step rows "
                               f"for length {end.length}")
        fails: list[str] = []
        if self.enable_trajectory_filtering:
            fails = self.filter.failures(end.length, end.ret, bool(end.flags & _TERM), bool(end.flags & _TRUNC),
                                         lambda: self._trajectory(end, obs, step))
        if fails:
            self._reject(end, fails)
            return
        block = Block(obs, step, n_obs, n_step, [Piece(end.key, 0, n_obs, 0, n_step)], [end])
        if self.keep_top_k is None:
            self._write(end, block)
            return
        self._order += 1
        item = (end.ret, -self._order, end, block)
        if len(self._held) < self.keep_top_k:
            heapq.heappush(self._held, item)
        else:
            out = heapq.heappushpop(self._held, item)  # the lowest return (latest on ties) leaves
            self._reject(out[2], ["top_k"])

    def on_finished_episodes(self, episodes: Any, writer: Any) -> None:
        """Writer thread (vector envs): decide the sub-env episodes that just ended."""
        n = len(episodes)
        lengths, rets, flags = episodes.lengths, episodes.returns, episodes.flags
        keep = np.ones(n, bool)
        if self.schedule is not None:
            keep = np.array([bool(self.schedule(int(k))) for k in episodes.keys.tolist()], dtype=bool)
            self.skipped_episodes += int(np.count_nonzero(~keep))
        fails: dict[str, np.ndarray] = {}
        if self.enable_trajectory_filtering:
            fails = self.filter.failures_batch(lengths, rets, (flags & _TERM) > 0)
            failed = np.zeros(n, bool)
            for m in fails.values():
                failed |= m & keep
            if self.filter.predicate is not None and (keep & ~failed).any():
                cand = np.flatnonzero(keep & ~failed)
                block = episodes.block(cand)
                ok = np.array([bool(self.filter.predicate(t)) for t in episodes.trajectories(block)], dtype=bool)
                fails["predicate"] = np.zeros(n, bool)
                fails["predicate"][cand[~ok]] = True
                failed[cand[~ok]] = True
        else:
            failed = np.zeros(n, bool)
        with self._lock:
            for reason, m in fails.items():
                c = int(np.count_nonzero(m & keep))
                if c:
                    self.rejection_reasons[reason] += c
            rej = keep & failed
            self.rejected_lengths.extend(lengths[rej].tolist())
            self.rejected_returns.extend(rets[rej].tolist())
        keep &= ~failed
        if not keep.any():
            return
        if self.keep_top_k is None:
            writer.write_block(episodes.block(keep))
            with self._lock:
                self.episode_lengths.extend(lengths[keep].tolist())
                self.episode_returns.extend(rets[keep].tolist())
                self.episode_flags.extend(flags[keep].tolist())
            return
        for j in np.flatnonzero(keep).tolist():
            end = EpisodeEnd(int(episodes.keys[j]), int(lengths[j]), float(rets[j]), int(flags[j]), {})
            self._order += 1
            rank = (end.ret, -self._order)
            if len(self._held) >= self.keep_top_k and rank < self._held[0][:2]:
                self._reject(end, ["top_k"])  # lower than every held episode (or tied and later)
                continue
            item = (*rank, end, episodes.block([j]))  # held: take its rows now (the recorder frees them)
            with self._lock:
                out = heapq.heappush(self._held, item) if len(self._held) < self.keep_top_k \
                    else heapq.heappushpop(self._held, item)
            if out is not None:
                self._reject(out[2], ["top_k"])

    def _reject(self, end: EpisodeEnd, reasons: list[str]) -> None:
        with self._lock:
            self.rejection_reasons.update(reasons)
            self.rejected_lengths.append(end.length)
            self.rejected_returns.append(end.ret)

    def _write(self, end: EpisodeEnd, block: Block) -> None:
        self._submit_bounded(block, self.max_pending_bytes)
        self.episode_lengths.append(end.length)
        self.episode_returns.append(end.ret)
        self.episode_flags.append(end.flags)

    # -- statistics --------------------------------------------------------------------------------------
    def get_trajectory_statistics(self) -> dict[str, Any]:
        """Kept and rejected trajectories.

        Returns ``total_trajectories`` (kept, including top-k episodes still held), ``trajectory_lengths``
        and ``trajectory_rewards`` (mean/std/min/max over kept episodes), ``completion_types`` of kept
        episodes, ``rejected_trajectories``, ``rejection_reasons`` (criterion -> episodes failing it; an
        episode may fail several; ``top_k`` counts episodes pushed out of the top k),
        ``rejected_lengths``/``rejected_rewards``, ``total_seen`` and ``acceptance_rate``.
        """
        with self._lock:
            held = list(self._held)
            lengths = list(self.episode_lengths) + [h[2].length for h in held]
            returns = list(self.episode_returns) + [h[2].ret for h in held]
            flags = list(self.episode_flags) + [h[2].flags for h in held]
            rejected_lengths, rejected_returns = list(self.rejected_lengths), list(self.rejected_returns)
            reasons = dict(self.rejection_reasons)
        rejected = len(rejected_lengths)
        seen = len(lengths) + rejected
        return {
            "total_trajectories": len(lengths),
            "trajectory_lengths": _describe(lengths),
            "trajectory_rewards": _describe(returns),
            "completion_types": {"done": sum(1 for f in flags if f & _TERM),
                                 "truncated": sum(1 for f in flags if not f & _TERM)},
            "rejected_trajectories": rejected,
            "rejection_reasons": reasons,
            "rejected_lengths": _describe(rejected_lengths),
            "rejected_rewards": _describe(rejected_returns),
            "total_seen": seen,
            "acceptance_rate": len(lengths) / seen if seen else 0.0,
            "held_top_k": len(held),
            "open_episode_steps": self._cur_len() if self.collecting and self._ep_open else 0,
        }

    def get_dataset_statistics(self) -> dict[str, Any]:
        """Statistics of the episodes written to the dataset so far, plus ``rejected_trajectories``."""
        stats = super().get_dataset_statistics()
        stats["rejected_trajectories"] = len(self.rejected_lengths)
        stats["held_top_k"] = len(self._held)
        return stats

    def top_trajectories(self, k: int) -> list[dict[str, Any]]:
        """Length, return and metadata of the ``k`` kept episodes with the highest returns (best first)."""
        rows = [{"length": n, "return": r, "terminated": bool(f & _TERM)}
                for n, r, f in zip(self.episode_lengths, self.episode_returns, self.episode_flags)]
        rows += [{"length": h[2].length, "return": h[2].ret, "terminated": bool(h[2].flags & _TERM)} for h in self._held]
        return sorted(rows, key=lambda d: -d["return"])[:k]
