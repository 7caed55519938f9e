"""Recording wrappers for multi-agent envs: PettingZoo ``ParallelEnv`` and Isaac Lab ``DirectMARLEnv``.

Contents:
    * :class:`CollectingMultiAgentWrapper` - records a PettingZoo parallel env (agents may leave
      mid-episode); given an Isaac Lab-style batched MARL env it returns a
      :class:`CollectingIsaacLabMARLWrapper`.
    * :class:`CollectingIsaacLabMARLWrapper` - records every sub-env episode of a ``DirectMARLEnv``
      (``CollectingVectorWrapper(env)`` dispatches to it too).
    * :func:`agent_columns` - the per-agent step columns both store.

How multi-agent data are stored (one stored episode = one episode of the whole env, or of one sub-env):

* ``observations`` / ``actions``: a ``Dict`` space keyed by agent (``possible_agents`` order), so
  ``episode.observations["cart"]`` is that agent's ``(T+1, ...)`` array. All agents share the time axis:
  row ``t`` is the same env step for every agent. Where an agent is absent (it left, PettingZoo) its
  rows are zeros.
* Per-agent step columns ``extras/agents/<agent>/{reward,terminated,truncated,active}``:
  ``active[t]`` says whether the agent acted at step ``t`` (always True for Isaac Lab, where agents
  never leave and a terminated agent keeps acting until its sub-env resets).
* ``rewards`` is the **sum over agents** of the rewards at that step, so episode returns and
  statistics are team returns. ``terminations[t]`` / ``truncations[t]``: Isaac Lab - all agents
  terminated / all agents timed out (its reset rule); PettingZoo - the last agents left on step ``t``,
  and none of them (terminated) / at least one of them (truncated) was truncated.
* ``episode.agent(name)`` (:class:`~gym_aquacollect.dataset.AgentEpisode`) returns one agent's own
  trajectory: its observations, actions, rewards and flags on the steps where it was active, with
  ``steps`` giving their positions on the shared time axis.
* The dataset metadata's ``env_description`` holds ``agents`` (the possible agents) and
  ``multi_agent`` (``"pettingzoo"`` or ``"isaaclab"``).

PettingZoo infos (``{agent: dict}``) are stored as ``infos/<agent>/<key>`` with presence masks. Isaac Lab
``extras`` are not stored per step; the terminal observation comes from ``extras[agent]["final_obs"]``
(Isaac Lab >= 3.0 with ``compute_final_obs``), otherwise the episode metadata says it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_aquacollect.collectors.base import DEFAULT_COMPRESSION, DEFAULT_DTYPE_POLICY, BaseCollector
from gym_aquacollect.recording.batched import DISABLED, SAME_STEP, BatchedRecorder
from gym_aquacollect.recording.torch_staging import TorchChunks, TorchRecordingLifecycle, _copy_leaves
from gym_aquacollect.schema.batched import leaf_get as _leaf_get
from gym_aquacollect.schema.batched import teacher_columns
from gym_aquacollect.storage.writer import FlushPolicy
from gym_aquacollect.wrappers.single import recorded_kwargs
from gym_aquacollect.wrappers.vector import _make_collector

__all__ = ["CollectingMultiAgentWrapper", "CollectingIsaacLabMARLWrapper", "agent_columns"]

_FIELDS = (("reward", np.float64), ("terminated", np.bool_), ("truncated", np.bool_), ("active", np.bool_))


def agent_columns(agents: list[str]) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Step columns ``extras/agents/<agent>/<field>`` for reward, terminated, truncated and active."""
    return [(f"extras/agents/{a}/{f}", (), np.dtype(dt)) for a in agents for f, dt in _FIELDS]


def _check_agents(agents: list[str]) -> list[str]:
    for a in agents:
        if not isinstance(a, str) or "/" in a or a.startswith("_"):
            raise ValueError(f"agent name {a!r} cannot be recorded: names must be str without '/' and not "
                             "start with '_' (they become Dict keys and column names)")
    return list(agents)


def _batch1(info: Any) -> Any:
    """A single env's info dict in Gymnasium's batched form for one sub-env (``(1, ...)`` leaves)."""
    if isinstance(info, dict):
        return {k: _batch1(v) for k, v in info.items()}
    return np.asarray([info]) if not isinstance(info, (str, bytes)) else np.array([info], dtype=object)


class CollectingMultiAgentWrapper(gym.utils.RecordConstructorArgs):
    """Record a PettingZoo ``ParallelEnv`` into a dataset (one stored episode per env episode).

    The wrapper forwards every attribute to the env and returns exactly what it returns.

    Example:
        >>> import tempfile
        >>> from gym_aquacollect import load_dataset
        >>> from gym_aquacollect.testing import CountingParallelEnv
        >>> path = tempfile.mkdtemp() + "/ma"
        >>> env = CollectingMultiAgentWrapper(CountingParallelEnv(agent_lifetimes=(2, 0), max_steps=3), path)
        >>> obs, infos = env.reset(seed=0)
        >>> while env.agents:
        ...     obs, rew, term, trunc, infos = env.step({a: 1 for a in env.agents})
        >>> env.close()
        >>> ep = load_dataset(path)[0]
        >>> len(ep), ep.extras["agents"]["a0"]["active"].tolist()
        (3, [True, True, False])
        >>> a0 = ep.agent("a0")
        >>> a0.steps.tolist(), a0.observations[:, 2].tolist(), a0.rewards.tolist(), a0.terminations.tolist()
        ([0, 1], [0.0, 1.0, 2.0], [0.5, 1.5], [False, True])
        >>> float(ep.rewards[0]) == 0.5 + 1.5     # episode reward = sum over agents
        True

    Args:
        env: a PettingZoo ``ParallelEnv`` (``possible_agents``, ``observation_space(agent)``, ...), or an
            Isaac Lab-style batched MARL env (dispatched to :class:`CollectingIsaacLabMARLWrapper`).
        path, collector, compression, record_infos, metadata, flush_policy, dtype_policy: as for
            :class:`~gym_aquacollect.CollectingWrapper`.
        teacher: ``teacher(observations: {agent: obs}) -> {agent: action}``, called before each step on
            the observations the actions are taken at; stored as ``extras/teacher_actions/<agent>``.
    """

    def __new__(cls, env: Any, *args: Any, **kwargs: Any):
        if cls is CollectingMultiAgentWrapper and _is_isaac_marl(env):  # the rule of wrappers.factory.wrapper_class
            return CollectingIsaacLabMARLWrapper(env, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        env: Any,
        path: str | Path | None = None,
        *,
        collector: BaseCollector | None = None,
        compression: Any = DEFAULT_COMPRESSION,
        record_infos: bool = True,
        metadata: dict[str, Any] | None = None,
        teacher: Any = None,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        dtype_policy: str = DEFAULT_DTYPE_POLICY,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, **recorded_kwargs(path, compression, record_infos, metadata, flush_policy, dtype_policy))
        if not hasattr(env, "possible_agents"):
            raise TypeError(f"CollectingMultiAgentWrapper needs a PettingZoo ParallelEnv (possible_agents), got "
                            f"{type(env).__name__}; use CollectingWrapper / CollectingVectorWrapper instead")
        self.env = env
        self.agents_all = _check_agents(list(env.possible_agents))
        obs_space = spaces.Dict({a: env.observation_space(a) for a in self.agents_all})
        act_space = spaces.Dict({a: env.action_space(a) for a in self.agents_all})
        desc = {"agents": self.agents_all, "multi_agent": "pettingzoo", "class": type(env).__name__,
                "episode_reward": "sum over agents"}
        self.collector = _make_collector(
            collector, path, obs_space, act_space, env, desc, compression=compression, record_infos=record_infos,
            metadata=metadata, flush_policy=flush_policy, dtype_policy=dtype_policy,
        )
        c = self.collector
        self.teacher = teacher
        ext = agent_columns(self.agents_all) + (teacher_columns(c._act_codec) if teacher is not None else [])
        self._rec = BatchedRecorder(c, 1, c._obs_codec, c._act_codec, DISABLED, record_infos=record_infos,
                                    chunk_steps=None, episode_meta={"multi_agent": "pettingzoo"}, ext=ext)
        self._record_infos = record_infos
        self._ext_index = {name: j for j, (name, _, _) in enumerate(self._rec.ext_specs)}
        self._obs_leaves = [(leaf.path, leaf) for leaf in c._obs_codec.leaves]
        self._last_obs: Any = None
        self._closed_rec = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("env", "collector"):
            raise AttributeError(name)
        return getattr(self.env, name)

    @property
    def unwrapped(self) -> Any:
        return getattr(self.env, "unwrapped", self.env)

    # -- rows -------------------------------------------------------------------------------------------
    def _write_obs(self, bufs: list[np.ndarray], k: int, obs: dict[str, Any]) -> None:
        for buf, (path, leaf) in zip(bufs, self._obs_leaves):
            a = path[0]
            if a in obs:
                v = obs[a] if len(path) == 1 else _leaf_get(obs[a], path[1:])
                try:
                    buf[k] = np.asarray(v, dtype=leaf.dtype).reshape(buf.shape[1:])
                except ValueError:
                    raise ValueError(f"gym_aquacollect: observation of agent {a!r} {leaf.name!r} has shape "
                                     f"{np.shape(v)}, expected {leaf.shape} {leaf.dtype} (its observation_space)") from None
            else:
                buf[k] = 0

    def _write_agent_leaves(self, bufs: list[np.ndarray], k: int, value: dict[str, Any], label: str) -> None:
        for buf, leaf in zip(bufs, self._rec.act_codec.leaves):
            a = leaf.path[0]
            if a in value:
                v = value[a] if len(leaf.path) == 1 else _leaf_get(value[a], leaf.path[1:])
                try:
                    buf[k, 0] = np.asarray(v, dtype=leaf.dtype)
                except (ValueError, TypeError):
                    raise ValueError(f"gym_aquacollect: {label} of agent {a!r} {leaf.name!r} is {v!r:.60}, expected "
                                     f"shape {leaf.shape} {leaf.dtype} (its action_space)") from None
            else:
                buf[k] = 0

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and open a new episode (an open one is stored as truncated)."""
        out = self.env.reset(seed=seed, options=options)
        obs, infos = out
        leaves = [np.zeros((1, *leaf.shape), leaf.dtype) for _, leaf in self._obs_leaves]
        self._write_obs(leaves, 0, obs)
        batched = {a: _batch1(i) for a, i in (infos or {}).items()} if self._record_infos else None
        self._rec.on_reset(np.ones(1, bool), None, batched, seed, options, obs_leaves=leaves)
        self._last_obs = obs
        return out

    def step(self, actions: dict[str, Any]):
        """Step the env; the acting agents' data and the shared step columns are recorded."""
        teacher_action = None if self.teacher is None else self.teacher(self._last_obs)
        out = self.env.step(actions)
        obs, rew, term, trunc, infos = out
        rec = self._rec
        if rec.writer.failed:  # e.g. a forked child: say so at the first step
            rec.writer.check()
        c = rec.current()
        k = c.k
        self._write_obs(c.obs, k, obs)
        ext, idx = c.ext, self._ext_index
        total, any_trunc = 0.0, False
        self._write_agent_leaves(c.act, k, actions, "action")
        for a in self.agents_all:
            acted = a in rew or a in term or a in actions
            r = float(rew.get(a, 0.0))
            te, tr = bool(term.get(a, False)), bool(trunc.get(a, False))
            ext[idx[f"extras/agents/{a}/reward"]][k] = r
            ext[idx[f"extras/agents/{a}/terminated"]][k] = te
            ext[idx[f"extras/agents/{a}/truncated"]][k] = tr
            ext[idx[f"extras/agents/{a}/active"]][k] = acted
            total += r
            any_trunc |= tr
        done = not getattr(self.env, "agents", ())
        c.rew[k] = total
        c.term[k] = done and not any_trunc
        c.trunc[k] = done and any_trunc
        if self._record_infos:
            c.infos.append({a: _batch1(i) for a, i in (infos or {}).items()})
        if teacher_action is not None:
            self._write_agent_leaves(c.ext[len(self.agents_all) * len(_FIELDS):], k, teacher_action,
                                     "teacher action")
            self._last_obs = obs
        c.k = k + 1
        if rec.writer.busy:
            rec.writer.let_run()  # see DatasetWriter.let_run (the GIL convoy)
        if c.k == rec.K or done:
            rec.submit()
        return out

    def flush(self) -> None:
        """Make everything recorded so far durable before returning."""
        self._rec.submit()
        self.collector.flush()

    def close(self) -> None:
        """Store the open episode (truncated), finalize the dataset, then close the env."""
        try:
            if not self._closed_rec:
                self._closed_rec = True
                self._rec.close()
                self.collector.end_collection()
        finally:
            if hasattr(self.env, "close"):
                self.env.close()

    def __enter__(self) -> CollectingMultiAgentWrapper:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def dataset_path(self) -> Path:
        return self.collector.dataset_path


def _is_isaac_marl(env: Any) -> bool:
    u = getattr(env, "unwrapped", env)
    return hasattr(u, "possible_agents") and hasattr(u, "num_envs") and hasattr(u, "device")


class CollectingIsaacLabMARLWrapper(TorchRecordingLifecycle, gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Record every sub-env episode of an Isaac Lab ``DirectMARLEnv`` (or
    :class:`~gym_aquacollect.testing.FakeIsaacLabMARLEnv`).

    The episode unit is (sub-env, episode), cut where Isaac Lab resets a sub-env: all agents
    terminated, or all agents timed out. One agent terminating alone does not end the episode; its
    per-agent ``terminated`` column shows it. Per step one ``copy_`` per field into device chunks, as
    :class:`~gym_aquacollect.wrappers.isaaclab.CollectingIsaacLabWrapper` does.

    Example:
        >>> import tempfile, torch, gymnasium as gym
        >>> from gym_aquacollect.testing.fake_isaaclab import FakeMARLEnvCfg, FakeSceneCfg
        >>> from gym_aquacollect import CollectingVectorWrapper, load_dataset
        >>> cfg = FakeMARLEnvCfg(scene=FakeSceneCfg(num_envs=2), compute_final_obs=True,
        ...                      agent_terminate_schedule={"cart": [1, 2], "pendulum": [3, 2]})
        >>> path = tempfile.mkdtemp() + "/marl"
        >>> env = CollectingVectorWrapper(gym.make("Isaac-Fake-MARL-v0", cfg=cfg), path)
        >>> type(env).__name__
        'CollectingIsaacLabMARLWrapper'
        >>> _ = env.reset(seed=0)
        >>> for _ in range(3):
        ...     _ = env.step({"cart": torch.zeros(2, 1), "pendulum": torch.zeros(2, 1)})
        >>> env.close()
        >>> ep = load_dataset(path)[0]       # sub-env 1: both agents terminated at step 2
        >>> ep.metadata["env_index"], len(ep), ep.observations["cart"][:, 2].tolist()
        (1, 2, [0.0, 1.0, 2.0])
    """

    def __init__(
        self,
        env: gym.Env,
        path: str | Path | None = None,
        *,
        collector: BaseCollector | None = None,
        compression: Any = DEFAULT_COMPRESSION,
        record_infos: bool = True,
        metadata: dict[str, Any] | None = None,
        teacher: Any = None,
        flush_policy: FlushPolicy | dict[str, Any] | None = None,
        dtype_policy: str = DEFAULT_DTYPE_POLICY,
        chunk_steps: int | None = None,
        autoreset_mode: Any = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, **recorded_kwargs(path, compression, record_infos, metadata, flush_policy, dtype_policy,
                                        chunk_steps=chunk_steps))
        gym.Wrapper.__init__(self, env)
        u = env.unwrapped
        if not _is_isaac_marl(env):
            raise TypeError(f"{type(u).__name__} is not an Isaac Lab-style MARL env (possible_agents, num_envs, device)")
        self.agents_all = _check_agents(list(u.possible_agents))
        self.num_envs, self.device = int(u.num_envs), str(u.device)
        cfg = getattr(u, "cfg", None)
        self.final_obs_available = bool(getattr(cfg, "compute_final_obs", False))
        obs_space = spaces.Dict({a: u.observation_spaces[a] for a in self.agents_all})
        act_space = spaces.Dict({a: u.action_spaces[a] for a in self.agents_all})
        desc = {"num_envs": self.num_envs, "device": self.device, "autoreset_mode": SAME_STEP, "isaaclab": True,
                "agents": self.agents_all, "multi_agent": "isaaclab", "episode_reward": "sum over agents",
                "final_observation": "extras[agent]['final_obs']" if self.final_obs_available
                else "missing (the task does not expose it; last obs row of each episode is zeros)",
                "env_name": getattr(cfg, "env_name", None), "infos": "not recorded (Isaac Lab extras)"}
        self.collector = _make_collector(
            collector, path, obs_space, act_space, env, desc, compression=compression, record_infos=False,
            metadata=metadata, flush_policy=flush_policy, dtype_policy=dtype_policy,
        )
        c = self.collector
        self.teacher = teacher
        ext = agent_columns(self.agents_all) + (teacher_columns(c._act_codec) if teacher is not None else [])
        self._rec = BatchedRecorder(c, self.num_envs, c._obs_codec, c._act_codec, SAME_STEP, record_infos=False,
                                    chunk_steps=chunk_steps, episode_meta={"autoreset_mode": SAME_STEP}, ext=ext,
                                    per_env_seeds=False)  # one seed for the whole batch
        self._chunks = TorchChunks(self._rec, self.device, self.final_obs_available)
        self._rec.before_exit.append(self._chunks.hand_over)
        self._obs_paths = [leaf.path for leaf in c._obs_codec.leaves]
        self._act_paths = [leaf.path for leaf in c._act_codec.leaves]
        nf = len(_FIELDS)
        self._agent_ext = [tuple(range(j * nf, j * nf + nf)) for j in range(len(self.agents_all))]
        self._teacher_ext = len(self.agents_all) * nf
        self._last_final: Any = None
        self._last_obs: Any = None
        self._closed_rec = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        out = self.env.reset(seed=seed, options=options)
        obs = out[0]
        self._chunks.hand_over()
        leaves = [np.array(_leaf_get(obs, p).detach().cpu().numpy(), dtype=leaf.dtype, copy=True)
                  for p, leaf in zip(self._obs_paths, self._rec.obs_codec.leaves)]
        self._rec.on_reset(np.ones(self.num_envs, bool), None, None, seed, options, obs_leaves=leaves)
        plain = self._rec.chunk
        self._rec.chunk = None
        slot = self._chunks.slot()
        slot["chunk"].reset = plain.reset
        plain.release()
        self._last_final = self._final_of(out[1])
        self._last_obs = obs
        return out

    def _final_of(self, extras: Any) -> Any:
        try:
            return extras[self.agents_all[0]].get("final_obs")
        except (KeyError, TypeError, AttributeError):
            return None

    def step(self, actions: dict[str, Any]):
        teacher_action = None if self.teacher is None else self.teacher(self._last_obs)
        out = self.env.step(actions)
        obs, rew, term, trunc, extras = out
        if self._rec.writer.failed:  # e.g. a forked child: say so at the first step
            self._rec.writer.check()
        ch = self._chunks
        slot = ch.cur if ch.cur is not None else ch.slot()
        dev, c = slot["dev"], slot["chunk"]
        k = c.k
        _copy_leaves(dev["obs"], k, obs, self._obs_paths)
        _copy_leaves(dev["act"], k, actions, self._act_paths)
        ext = dev["ext"]
        r_env, te_env, tr_env = dev["rew"][k], dev["term"][k], dev["trunc"][k]
        for j, (a, cols) in enumerate(zip(self.agents_all, self._agent_ext)):
            ra, ta, tb = rew[a], term[a], trunc[a]
            ext[cols[0]][k].copy_(ra, non_blocking=True)
            ext[cols[1]][k].copy_(ta, non_blocking=True)
            ext[cols[2]][k].copy_(tb, non_blocking=True)
            ext[cols[3]][k].fill_(True)  # Isaac Lab agents never leave
            if j == 0:
                r_env.copy_(ra, non_blocking=True)
                te_env.copy_(ta, non_blocking=True)
                tr_env.copy_(tb, non_blocking=True)
            else:
                r_env.add_(ra)
                te_env.logical_and_(ta)
                tr_env.logical_and_(tb)
        if teacher_action is not None:
            _copy_leaves(ext[self._teacher_ext:], k, teacher_action, self._act_paths)
            self._last_obs = obs
        if dev["final"] is not None:
            fo = self._final_of(extras)
            if fo is not None and fo is not self._last_final:  # new tensors: the env reset some sub-envs
                self._last_final = fo
                final = {a: extras[a]["final_obs"] for a in self.agents_all}
                _copy_leaves(dev["final"], k, final, self._obs_paths)
                c.final_ok[k] = True
        c.k = k + 1
        if c.k == self._rec.K:
            ch.hand_over()
        return out
