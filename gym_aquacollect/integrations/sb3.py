"""Recording Stable-Baselines3 vector envs: :class:`CollectingVecEnv`.

Contents:
    * :class:`CollectingVecEnv` - an SB3 :class:`~stable_baselines3.common.vec_env.VecEnvWrapper` that
      records every finished sub-env episode (``env_index`` in its metadata), over ``DummyVecEnv``,
      ``SubprocVecEnv`` or any SB3 ``VecEnv``.
    * :func:`sb3_infos_to_batched` - SB3's list of per-env info dicts as one Gymnasium batched info dict
      (``_key`` masks).

SB3 accepts only its own ``VecEnv`` type, so :class:`~gym_aquacollect.CollectingVectorWrapper` cannot sit
in an SB3 chain. :class:`CollectingVecEnv` translates SB3's step contract into Gymnasium's SAME_STEP
autoreset contract and hands it to the same batched recorder the Gymnasium vector wrapper uses (one
copy per field per step in your thread, episode splitting in the writer thread):

* ``dones[i]`` with ``infos[i]["TimeLimit.truncated"]`` becomes ``truncated``, otherwise ``terminated``;
* the final observation of a finished episode is ``infos[i]["terminal_observation"]`` (SB3 has already
  reset that sub-env, so ``obs[i]`` is the next episode's first observation); the final step's info is
  stored on the final row, the sub-env's ``reset_infos[i]`` on the next episode's first row;
* seeds given with ``venv.seed(s)`` before a ``reset()`` are stored per episode.

Where it goes decides what is recorded:

* ``VecNormalize(CollectingVecEnv(venv))`` records the **raw** observations and rewards (what the env
  produced); the agent sees normalized ones. This is the usual choice.
* ``CollectingVecEnv(VecNormalize(venv))`` records what the agent sees: normalized observations (and
  terminal observations) and normalized rewards, with statistics that change during training.
* The same holds for ``VecFrameStack`` / ``VecTransposeImage``: below them, single raw frames; above, the
  stacked/transposed ones.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from gym_aquacollect import load_dataset
    >>> path = tempfile.mkdtemp() + "/sb3"
    >>> venv = CollectingVecEnv(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2), path)
    >>> _ = venv.seed(0); obs = venv.reset()
    >>> for _ in range(100):
    ...     obs, rewards, dones, infos = venv.step(venv.action_space.sample()[None].repeat(2, 0))
    >>> venv.close()
    >>> ds = load_dataset(path)
    >>> ds.total_steps, sorted({ep.metadata["env_index"] for ep in ds}), ds[0].metadata["seed"] in (0, 1)
    (200, [0, 1], True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

try:
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError(
        "gym_aquacollect.integrations.sb3 needs Stable-Baselines3: pip install 'gym_aquacollect[sb3]' "
        "(stable-baselines3==2.9.2)"
    ) from e

from gym_aquacollect.wrappers.vector import CollectingVectorWrapper

__all__ = ["CollectingVecEnv", "sb3_infos_to_batched"]

#: SB3 bookkeeping keys that are not the env's info (stored elsewhere: final observation, flags)
_SB3_KEYS = ("terminal_observation", "TimeLimit.truncated")


def sb3_infos_to_batched(infos: list[dict[str, Any]], skip: tuple[str, ...] = _SB3_KEYS) -> dict[str, Any]:
    """SB3's per-env info dicts as a Gymnasium batched info dict: ``{key: values (N,), "_key": mask}``.

    Nested dicts (Monitor's ``"episode"``) become nested batched dicts. A key missing for some sub-envs
    gets a zero/empty value there and ``False`` in its mask.

    Example:
        >>> out = sb3_infos_to_batched([{"a": 1.0}, {"a": 2.0, "episode": {"r": 9.0, "l": 9}}])
        >>> out["a"].tolist(), out["_a"].tolist(), out["episode"]["r"].tolist(), out["_episode"].tolist()
        ([1.0, 2.0], [True, True], [0.0, 9.0], [False, True])
    """
    n = len(infos)
    keys: dict[str, None] = {}
    for info in infos:
        if info:
            for k in info:
                if k not in skip:
                    keys[k] = None
    out: dict[str, Any] = {}
    for k in keys:
        mask = np.array([bool(info) and k in info for info in infos], dtype=bool)
        vals = [info[k] if m else None for info, m in zip(infos, mask)]
        first = next(v for v, m in zip(vals, mask) if m)
        if isinstance(first, dict):
            out[k] = sb3_infos_to_batched([v if isinstance(v, dict) else {} for v in vals], ())
        else:
            proto = np.asarray(first)
            if proto.dtype.kind in "OUS":
                arr = np.empty(n, dtype=object)
                for i, v in enumerate(vals):
                    arr[i] = v if v is not None else ""
            else:
                arr = np.zeros((n, *proto.shape), dtype=proto.dtype)
                for i, v in enumerate(vals):
                    if v is not None:
                        arr[i] = v
            out[k] = arr
        out["_" + k] = mask
    return out


class _Feed(gym.vector.VectorEnv):
    """A Gymnasium vector env (SAME_STEP autoreset) that returns values handed to it: lets the SB3 wrapper
    drive :class:`~gym_aquacollect.CollectingVectorWrapper`'s recording path with SB3's data."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    #: SB3's ``VecEnv.seed(s)`` seeds sub-env ``i`` with ``s + i``: that seed reproduces its first episode.
    per_env_seeds = True

    def __init__(self, venv: VecEnv) -> None:
        self.num_envs = venv.num_envs
        self.single_observation_space = venv.observation_space
        self.single_action_space = venv.action_space
        self.observation_space = batch_space(venv.observation_space, venv.num_envs)
        self.action_space = batch_space(venv.action_space, venv.num_envs)
        self.spec = _inner_spec(venv)
        self.next: Any = None

    def reset(self, *, seed: Any = None, options: Any = None):
        return self.next

    def step(self, actions: Any):
        return self.next

    def close(self, **kwargs: Any) -> None:
        pass


def _inner_spec(venv: VecEnv) -> Any:
    """The Gymnasium ``EnvSpec`` of the first sub-env, when it can be read (stored with the dataset)."""
    try:
        spec = venv.get_attr("spec", indices=[0])[0]
    except Exception:  # noqa: BLE001 - a custom VecEnv without get_attr support
        return None
    return spec if isinstance(spec, gym.envs.registration.EnvSpec) else None


def _base(venv: VecEnv) -> VecEnv:
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


class CollectingVecEnv(VecEnvWrapper):
    """Record every sub-env episode of a Stable-Baselines3 ``VecEnv`` into a gym_aquacollect dataset.

    Args:
        venv: an SB3 ``VecEnv`` (``DummyVecEnv``, ``SubprocVecEnv``, ``make_vec_env(...)``, or a wrapper
            of one; see the module docstring for where to put it relative to ``VecNormalize``).
        path: the dataset directory (``None``: a fresh directory under ``./aquacollect-data``).
        **kwargs: the recording wrappers' options (``collector``, ``compression``, ``record_infos``,
            ``metadata``, ``teacher``, ``flush_policy``, ``dtype_policy``, ``chunk_steps``), as for
            :class:`~gym_aquacollect.CollectingVectorWrapper`.

    The agent sees exactly what ``venv`` returns (the same objects). ``close()`` stores open episodes
    (truncated, ``interrupted: "close"``), finalizes the dataset and closes ``venv``; ``flush()`` makes
    everything recorded so far durable. ``dataset_path`` and ``collector`` are as on the other wrappers.
    """

    def __init__(self, venv: VecEnv, path: str | Path | None = None, **kwargs: Any) -> None:
        if not isinstance(venv, VecEnv):
            raise TypeError(f"CollectingVecEnv needs a Stable-Baselines3 VecEnv, got {type(venv).__name__}; "
                            "for a Gymnasium vector env use gym_aquacollect.CollectingVectorWrapper")
        if "autoreset_mode" in kwargs:
            raise TypeError("CollectingVecEnv: autoreset_mode is fixed (SB3 VecEnvs reset in the same step)")
        super().__init__(venv)
        # named after the SB3 VecEnv, as the dataset's env_description["vector_env"] says which env recorded it
        feed_cls = type(f"{type(_base(venv)).__name__}(SB3)", (_Feed,), {})
        self._feed = feed_cls(venv)
        self.recorder = CollectingVectorWrapper(self._feed, path, **kwargs)
        self._actions: Any = None
        self._closed = False

    @property
    def collector(self) -> Any:
        return self.recorder.collector

    @property
    def dataset_path(self) -> Path:
        return self.recorder.dataset_path

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def reset(self) -> Any:
        base = _base(self.venv)
        seeds = list(getattr(base, "_seeds", None) or [None] * self.num_envs)
        options = list(getattr(base, "_options", None) or [{}] * self.num_envs)
        obs = self.venv.reset()
        infos = sb3_infos_to_batched(list(getattr(self.venv, "reset_infos", None) or [{}] * self.num_envs))
        self._feed.next = (obs, infos)
        opts = options[0] if options and all(o == options[0] for o in options) else {"per_env": options}
        self.recorder.reset(seed=None if all(s is None for s in seeds) else seeds, options=opts or None)
        return obs

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = out = self.venv.step_wait()
        dones = np.asarray(dones, dtype=bool)
        trunc = np.zeros(self.num_envs, dtype=bool)
        done_idx = np.flatnonzero(dones).tolist()
        for i in done_idx:
            trunc[i] = bool(infos[i].get("TimeLimit.truncated", False))
        term = dones & ~trunc
        step_infos = list(infos)
        g_infos: dict[str, Any]
        if done_idx:
            final_obs = np.empty(self.num_envs, dtype=object)
            reset_infos = getattr(self.venv, "reset_infos", None)
            for i in done_idx:
                if "terminal_observation" not in infos[i]:
                    raise KeyError(f"CollectingVecEnv: sub-env {i} finished without infos[{i}]"
                                   "['terminal_observation'] (SB3 VecEnvs set it); the final observation is needed")
                final_obs[i] = infos[i]["terminal_observation"]
                step_infos[i] = reset_infos[i] if reset_infos is not None and len(reset_infos) > i else {}
            g_infos = sb3_infos_to_batched(step_infos)
            g_infos["final_obs"] = final_obs
            g_infos["_final_obs"] = dones.copy()
            g_infos["final_info"] = sb3_infos_to_batched([infos[i] if dones[i] else {} for i in range(self.num_envs)])
            g_infos["_final_info"] = dones.copy()
        else:
            g_infos = sb3_infos_to_batched(step_infos)
        self._feed.next = (obs, rewards, term, trunc, g_infos)
        self.recorder.step(self._actions)
        return out

    def flush(self) -> None:
        """Make everything recorded so far durable (open episodes stay open)."""
        self.recorder.flush()

    def close(self) -> None:
        """Store open episodes (truncated), finalize the dataset, then close ``venv``."""
        try:
            if not self._closed:
                self._closed = True
                self.recorder.close()
        finally:
            self.venv.close()
