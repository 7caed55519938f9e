"""Deterministic test environments whose observations say exactly where they come from.

Contents:
    * :class:`CountingEnv` - a single ``gymnasium.Env``; its observation is
      ``(env index, episode id, step index)`` so a recorded episode can be checked to be contiguous,
      complete and correctly terminated. Per-episode lengths cycle through a list; episodes end by
      termination, truncation or both; optional heterogeneous info keys.
    * :func:`make_counting_vector_env` - a ``SyncVectorEnv`` / ``AsyncVectorEnv`` of counting envs with
      different episode lengths per sub-env, in any autoreset mode.
    * :func:`expected_length` - the length episode ``e`` of a counting env will have.
    * :func:`check_counting_episode` - assert that one recorded episode is exactly what a counting env
      produced (duck-typed over any object with ``observations``/``actions``/... arrays).

Rewards are ``step index + 0.5 * action`` (the step index of the step being taken, from 0), so a test can
also check that actions and rewards stay aligned with observations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["CountingEnv", "make_counting_vector_env", "expected_length", "check_counting_episode", "END_MODES"]

#: How a counting episode ends: ``terminated`` only, ``truncated`` only, or both flags on the last step.
END_MODES = ("terminate", "truncate", "both")


def expected_length(lengths: Sequence[int], episode_id: int) -> int:
    """Length of episode ``episode_id`` for a counting env built with ``episode_lengths=lengths``."""
    return int(lengths[episode_id % len(lengths)])


class CountingEnv(gym.Env):
    """A deterministic env whose observation encodes ``(env_index, episode_id, step_index)``.

    Args:
        env_index: the value of observation column 0 (the sub-env this env is in a vector env).
        episode_lengths: episode ``e`` lasts ``episode_lengths[e % len(episode_lengths)]`` steps.
        end: ``"terminate"``, ``"truncate"`` or ``"both"`` (both flags True on the last step).
        dict_obs: when True the observation is ``{"ids": int64 (3,), "pos": float32 (2,)}`` instead of a
            float32 ``(3,)`` Box.
        episode_info: add ``info["episode"] = {"l": T, "r": return}`` on the last step only, like
            ``RecordEpisodeStatistics`` (an info key that comes and goes).
        info_array: add ``info["arr"]`` (float32 ``(2,)``) on every step (not on reset).

    Episode ids count the resets of this env from 0. Every info holds ``env_index``, ``episode_id`` and
    ``step`` (the step index of the observation it comes with); reset infos also hold ``"reset": True``.

    Example:
        >>> env = CountingEnv(env_index=2, episode_lengths=[2])
        >>> obs, info = env.reset()
        >>> obs.tolist(), info["step"]
        ([2.0, 0.0, 0.0], 0)
        >>> env.step(1)[:3]
        (array([2., 0., 1.], dtype=float32), 0.5, False)
        >>> obs, rew, term, trunc, info = env.step(0)
        >>> obs.tolist(), rew, term, trunc
        ([2.0, 0.0, 2.0], 1.0, True, False)
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        env_index: int = 0,
        episode_lengths: Sequence[int] = (5,),
        end: str = "terminate",
        *,
        dict_obs: bool = False,
        episode_info: bool = False,
        info_array: bool = False,
    ) -> None:
        if end not in END_MODES:
            raise ValueError(f"CountingEnv: end must be one of {END_MODES}, got {end!r}")
        if not episode_lengths or min(episode_lengths) < 1:
            raise ValueError(f"CountingEnv: episode_lengths must be positive ints, got {episode_lengths!r}")
        self.env_index = int(env_index)
        self.episode_lengths = [int(x) for x in episode_lengths]
        self.end = end
        self.dict_obs = dict_obs
        self.episode_info = episode_info
        self.info_array = info_array
        if dict_obs:
            self.observation_space = spaces.Dict(
                {
                    "ids": spaces.Box(0, 2**31, (3,), np.int64),
                    "pos": spaces.Box(-np.inf, np.inf, (2,), np.float32),
                }
            )
        else:
            self.observation_space = spaces.Box(0, 1e9, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.episode_id = -1
        self.t = 0
        self._return = 0.0
        self._done = True

    def _obs(self) -> Any:
        ids = (self.env_index, self.episode_id, self.t)
        if self.dict_obs:
            return {
                "ids": np.array(ids, dtype=np.int64),
                "pos": np.array([self.t * 0.5, -self.episode_id], dtype=np.float32),
            }
        return np.array(ids, dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        return {"env_index": self.env_index, "episode_id": self.episode_id, "step": self.t}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode_id += 1
        self.t = 0
        self._return = 0.0
        self._done = False
        info = self._info()
        info["reset"] = True
        return self._obs(), info

    def step(self, action: Any):
        if self._done:
            raise RuntimeError(
                f"CountingEnv {self.env_index}: step() after the episode ended; call reset() first"
            )
        reward = float(self.t) + 0.5 * float(action)
        self._return += reward
        self.t += 1
        length = expected_length(self.episode_lengths, self.episode_id)
        last = self.t >= length
        terminated = last and self.end in ("terminate", "both")
        truncated = last and self.end in ("truncate", "both")
        self._done = last
        info = self._info()
        if self.info_array:
            info["arr"] = np.array([self.t, -self.t], dtype=np.float32)
        if last and self.episode_info:
            info["episode"] = {"l": self.t, "r": self._return}
        return self._obs(), reward, terminated, truncated, info


def make_counting_vector_env(
    episode_lengths: Sequence[Sequence[int]],
    *,
    vectorization: str = "sync",
    autoreset_mode: gym.vector.AutoresetMode | str = gym.vector.AutoresetMode.NEXT_STEP,
    end: str | Sequence[str] = "terminate",
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """A vector env of :class:`CountingEnv`; sub-env ``i`` uses ``episode_lengths[i]``.

    Args:
        episode_lengths: one list of episode lengths per sub-env (cycled per episode).
        vectorization: ``"sync"`` or ``"async"``.
        autoreset_mode: an :class:`~gymnasium.vector.AutoresetMode` or its value string.
        end: one end mode for all sub-envs or one per sub-env.
        env_kwargs: passed to every :class:`CountingEnv`.
    """
    n = len(episode_lengths)
    ends = [end] * n if isinstance(end, str) else list(end)
    if len(ends) != n:
        raise ValueError(f"make_counting_vector_env: {len(ends)} end modes for {n} sub-envs")
    mode = gym.vector.AutoresetMode(autoreset_mode)
    fns = [
        functools.partial(CountingEnv, i, list(episode_lengths[i]), ends[i], **env_kwargs) for i in range(n)
    ]
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    if vectorization == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    raise ValueError(f"make_counting_vector_env: vectorization must be 'sync' or 'async', got {vectorization!r}")


def _ids_column(observations: Any) -> np.ndarray:
    if isinstance(observations, dict):
        return np.asarray(observations["ids"])
    return np.asarray(observations)


def check_counting_episode(
    episode: Any,
    episode_lengths: Sequence[int],
    end: str = "terminate",
    *,
    env_index: int | None = None,
    complete: bool = True,
) -> tuple[int, int]:
    """Assert that ``episode`` is one contiguous counting-env episode; return ``(env_index, episode_id)``.

    Checks: one env index and one episode id in every observation row; step indices ``0..T``; rewards
    ``t + 0.5 * action``; no done flag before the last step. When ``complete``: ``T`` equals the configured
    length and the last step carries the flags of ``end``; otherwise (an episode cut by ``close()`` or an
    interrupting reset) ``T`` is shorter and the last step is marked truncated only.
    """
    ids = _ids_column(episode.observations)
    actions = np.asarray(episode.actions)
    rewards = np.asarray(episode.rewards)
    term = np.asarray(episode.terminations, dtype=bool)
    trunc = np.asarray(episode.truncations, dtype=bool)
    T = len(actions)
    assert T >= 1, "an episode with zero steps was stored"
    assert ids.shape[0] == T + 1, f"expected T+1={T + 1} observation rows, got {ids.shape[0]}"
    assert len(rewards) == len(term) == len(trunc) == T, "per-step columns have different lengths"
    env_ix, ep_id = int(ids[0, 0]), int(ids[0, 1])
    if env_index is not None:
        assert env_ix == env_index, f"episode comes from sub-env {env_ix}, expected {env_index}"
    assert (ids[:, 0] == env_ix).all(), f"mixed sub-envs in one episode: {ids[:, 0].tolist()}"
    assert (ids[:, 1] == ep_id).all(), f"mixed episode ids in one episode: {ids[:, 1].tolist()}"
    assert ids[:, 2].tolist() == list(range(T + 1)), f"steps not contiguous: {ids[:, 2].tolist()}"
    np.testing.assert_allclose(rewards, np.arange(T) + 0.5 * actions.astype(np.float64).reshape(T))
    assert not term[:-1].any() and not trunc[:-1].any(), "done flag before the last step"
    length = expected_length(episode_lengths, ep_id)
    if complete:
        assert T == length, f"episode {ep_id} of sub-env {env_ix}: {T} steps, expected {length}"
        assert bool(term[-1]) == (end in ("terminate", "both")), f"terminated[-1]={term[-1]} for end={end!r}"
        assert bool(trunc[-1]) == (end in ("truncate", "both")), f"truncated[-1]={trunc[-1]} for end={end!r}"
    else:
        assert T <= length, f"episode {ep_id} of sub-env {env_ix}: {T} steps > configured {length}"
        if T < length:
            meta = getattr(episode, "metadata", None) or {}
            ended_trunc = bool(trunc[-1]) or bool(meta.get("truncated"))
            assert ended_trunc and not term[-1], "an interrupted episode must end truncated, not terminated"
    return env_ix, ep_id
