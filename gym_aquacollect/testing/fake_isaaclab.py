"""A pure-Gymnasium stand-in for Isaac Lab RL tasks, for testing recorders without Isaac Sim.

Contents:
    * :class:`FakeSimCfg`, :class:`FakeSceneCfg`, :class:`FakeEnvCfg` - the config fields Isaac Lab's
      wrappers read, plus knobs for the test oracle.
    * :class:`FakeMARLEnvCfg` - the multi-agent config.
    * :class:`FakeIsaacLabEnv` - a batched ``gymnasium.Env`` (not a ``VectorEnv``) with the step/reset
      contract of ``ManagerBasedRLEnv`` / ``DirectRLEnv``: torch tensors on ``env.device``, same-step
      auto-reset, persistent buffers overwritten in place, one ``extras`` dict, optional
      ``extras["final_obs"]`` (Isaac Lab 3.0 ``compute_final_obs``).
    * :class:`FakeIsaacLabMARLEnv` - the ``DirectMARLEnv`` counterpart (per-agent dicts; a sub-env resets
      only when all agents terminated or all timed out).
    * :class:`GroundTruthStep`, :class:`GroundTruthEpisode` - what really happened, per sub-env, including
      the true final observation that Isaac Lab 2.x never exposes.
    * :func:`default_reward`, :func:`register_fake_envs`.

Observations are built for test oracles: the first columns of every observation row are
``(sub-env index, episode id, step index within the episode)`` (``policy`` group; for MARL every agent's
obs, followed by the agent index), so a test can check that a recorded episode is contiguous and complete.

Registered ids (created through ``gym.make`` exactly like Isaac Lab tasks, which returns
``OrderEnforcing(env)``): ``"Isaac-Fake-v0"`` and ``"Isaac-Fake-MARL-v0"``.

torch is an optional dependency of ``gym_aquacollect``; it is imported when an env is constructed.

Size: over 500 lines because a faithful stand-in for two Isaac Lab env classes (single- and multi-agent) and their configs; test code, not library code.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

__all__ = [
    "FakeSimCfg",
    "FakeSceneCfg",
    "FakeEnvCfg",
    "FakeMARLEnvCfg",
    "FakeIsaacLabEnv",
    "FakeIsaacLabMARLEnv",
    "GroundTruthStep",
    "GroundTruthEpisode",
    "default_reward",
    "register_fake_envs",
    "ID_COLUMNS",
]

#: Leading obs columns: sub-env index, episode id (per sub-env, from 0), step index within the episode.
ID_COLUMNS = 3


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is in the test environment
        raise ImportError(
            "FakeIsaacLabEnv needs torch; install it with `pip install gym_aquacollect[torch]`"
        ) from exc
    return torch


def default_reward(state: Any, action: Any) -> Any:
    """Reward of the fake tasks: ``1 - mean(action**2) + 0.1 * state[:, 0]`` as float32 ``(N,)``.

    A module-level function held by the config, like the ``func`` of an Isaac Lab reward term, so that
    ``env.spec.to_json()`` fails the same way as with a real config.
    """
    return (1.0 - (action.float() ** 2).mean(-1) + 0.1 * state[:, 0]).float()


@dataclass
class FakeSimCfg:
    dt: float = 1 / 120
    device: str = "cpu"
    render_interval: int = 2


@dataclass
class FakeSceneCfg:
    num_envs: int = 4


@dataclass
class FakeEnvCfg:
    """Configuration of :class:`FakeIsaacLabEnv`.

    ``terminate_schedule`` decides ``terminated``:

    * ``None``: never terminated (episodes end by time-out only);
    * a sequence of ints, one per sub-env: sub-env ``i`` terminates when its episode reaches that many
      steps (``0`` = never);
    * a sequence of sequences of ints, one per sub-env: the episode lengths of sub-env ``i`` cycle
      through its list (episode ``e`` uses ``lengths[e % len(lengths)]``);
    * a float ``p``: each step every sub-env terminates with probability ``p`` (seeded by ``seed``).

    Time-outs follow Isaac Lab: ``episode_length_buf >= max_episode_length`` in the manager workflow and
    ``>= max_episode_length - 1`` in the direct workflow, so ``terminated`` and ``truncated`` can both be
    True on one step.
    """

    sim: FakeSimCfg = field(default_factory=FakeSimCfg)
    scene: FakeSceneCfg = field(default_factory=FakeSceneCfg)
    decimation: int = 2
    episode_length_s: float = 0.25
    is_finite_horizon: bool = False
    seed: int | None = None
    env_name: str | None = "Isaac-Fake-v0"
    obs_dim: int = 6
    critic_dim: int = 0
    action_dim: int = 2
    concatenate_policy: bool = True
    image_obs: tuple[int, int] | None = None
    workflow: str = "manager"
    version: str = "3.0"
    compute_final_obs: bool = False
    terminate_schedule: Any = None
    fresh_reward: bool = False
    reward_fn: Callable[[Any, Any], Any] = default_reward
    record_ground_truth: bool = True


@dataclass
class FakeMARLEnvCfg(FakeEnvCfg):
    """Configuration of :class:`FakeIsaacLabMARLEnv`.

    ``agent_terminate_schedule`` maps an agent to a per-sub-env schedule (same forms as
    ``terminate_schedule``, without the float form). An agent's ``terminated`` flag stays True once set,
    until its sub-env resets, which happens only when all agents are terminated or all timed out.
    ``state_space=-1`` makes :meth:`FakeIsaacLabMARLEnv.state` the concatenation of all agents' obs.
    """

    env_name: str | None = "Isaac-Fake-MARL-v0"
    possible_agents: tuple[str, ...] = ("cart", "pendulum")
    agent_obs_dims: dict[str, int] = field(default_factory=lambda: {"cart": 6, "pendulum": 5})
    agent_action_dims: dict[str, int] = field(default_factory=lambda: {"cart": 1, "pendulum": 1})
    agent_terminate_schedule: dict[str, Any] = field(default_factory=dict)
    state_space: int = -1


class GroundTruthStep(NamedTuple):
    """One true transition of one sub-env. ``final_obs`` is the true next obs on done steps, else None."""

    episode_id: int
    obs: Any
    action: Any
    reward: Any
    terminated: Any
    truncated: Any
    final_obs: Any


@dataclass
class GroundTruthEpisode:
    """One true episode of one sub-env: ``observations`` has T+1 rows when the episode ended (the true
    final obs last), T rows when it is still running."""

    env_index: int
    episode_id: int
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    terminated: list = field(default_factory=list)
    truncated: list = field(default_factory=list)
    done: bool = False
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.actions)


def _tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    return fn(tree)


def _clone_cpu(tree: Any) -> Any:
    return _tree_map(lambda t: t.detach().to("cpu", copy=True), tree)


class _GroundTruthLog:
    """Batched per-step records (cheap to append), expanded per sub-env on demand."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.events: list[tuple] = []

    def on_reset(self, ids: Any, episode_ids: Any, obs: Any) -> None:
        self.events.append(("reset", ids.detach().cpu().long().clone(), episode_ids.cpu().clone(), _clone_cpu(obs)))

    def on_step(self, episode_ids, action, reward, term, trunc, done, final_obs, obs) -> None:
        self.events.append(
            (
                "step",
                episode_ids.cpu().clone(),
                _clone_cpu(action),
                _clone_cpu(reward),
                _clone_cpu(term),
                _clone_cpu(trunc),
                done.cpu().clone(),
                _clone_cpu(final_obs),
                _clone_cpu(obs),
            )
        )

    def steps(self) -> list[list[GroundTruthStep]]:
        out: list[list[GroundTruthStep]] = [[] for _ in range(self.num_envs)]
        current: list[Any] = [None] * self.num_envs
        for ev in self.events:
            if ev[0] == "reset":
                _, ids, _, obs = ev
                for i in ids.tolist():
                    current[i] = _tree_map(lambda t, i=i: t[i], obs)
                continue
            _, ep, action, reward, term, trunc, done, final_obs, obs = ev
            for i in range(self.num_envs):
                row = operator.itemgetter(i)
                fin = _tree_map(row, final_obs) if bool(done[i]) else None
                out[i].append(
                    GroundTruthStep(
                        int(ep[i]),
                        current[i],
                        _tree_map(row, action),
                        _tree_map(row, reward),
                        _tree_map(row, term),
                        _tree_map(row, trunc),
                        fin,
                    )
                )
                current[i] = _tree_map(row, obs)
        return out

    def episodes(self) -> list[list[GroundTruthEpisode]]:
        out: list[list[GroundTruthEpisode]] = [[] for _ in range(self.num_envs)]
        open_ep: list[GroundTruthEpisode | None] = [None] * self.num_envs
        for ev in self.events:
            if ev[0] == "reset":
                _, ids, ep_ids, obs = ev
                for i in ids.tolist():
                    if open_ep[i] is not None and len(open_ep[i]) > 0:
                        open_ep[i].interrupted = True
                        out[i].append(open_ep[i])
                    open_ep[i] = GroundTruthEpisode(i, int(ep_ids[i]), [_tree_map(lambda t, i=i: t[i], obs)])
                continue
            _, ep_ids_before, action, reward, term, trunc, done, final_obs, obs = ev
            for i in range(self.num_envs):
                row = operator.itemgetter(i)
                e = open_ep[i]
                e.actions.append(_tree_map(row, action))
                e.rewards.append(_tree_map(row, reward))
                e.terminated.append(_tree_map(row, term))
                e.truncated.append(_tree_map(row, trunc))
                if bool(done[i]):
                    e.observations.append(_tree_map(row, final_obs))
                    e.done = True
                    out[i].append(e)
                    open_ep[i] = GroundTruthEpisode(i, int(ep_ids_before[i]) + 1, [_tree_map(row, obs)])
                else:
                    e.observations.append(_tree_map(row, obs))
        for i, e in enumerate(open_ep):
            if e is not None and len(e) > 0:
                out[i].append(e)
        return out


class _FakeBase(gym.Env):
    """Shared machinery of the single- and multi-agent stand-ins."""

    metadata: ClassVar[dict] = {"render_modes": [None, "human", "rgb_array"]}

    def __init__(self, cfg: FakeEnvCfg, render_mode: str | None = None) -> None:
        torch = _torch()
        self._torch = torch
        if cfg.workflow not in ("manager", "direct"):
            raise ValueError(f"FakeEnvCfg.workflow must be 'manager' or 'direct', got {cfg.workflow!r}")
        if cfg.version not in ("2.3", "3.0"):
            raise ValueError(f"FakeEnvCfg.version must be '2.3' or '3.0', got {cfg.version!r}")
        self.cfg = cfg
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "render_fps": 1 / self.step_dt}
        if cfg.version == "3.0":
            self.metadata["autoreset_mode"] = gym.vector.AutoresetMode.SAME_STEP
        self._is_closed = False
        n, dev = self.num_envs, self.device
        # Buffers allocated once and overwritten in place, like Isaac Lab's.
        self.episode_length_buf = torch.zeros(n, dtype=torch.long, device=dev)
        self.reset_buf = torch.zeros(n, dtype=torch.bool, device=dev)
        self.common_step_counter = 0
        self._env_index = torch.arange(n, device=dev)
        self._episode_id = torch.full((n,), -1, dtype=torch.long, device=dev)
        self._steps = torch.zeros(n, dtype=torch.long, device=dev)  # true steps (immune to length randomisation)
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(cfg.seed if cfg.seed is not None else 0)
        self._needs_reset = True
        self._gt = _GroundTruthLog(n) if cfg.record_ground_truth else None

    # -- Isaac Lab properties ---------------------------------------------------------------------------
    @property
    def num_envs(self) -> int:
        return int(self.cfg.scene.num_envs)

    @property
    def device(self) -> str:
        return self.cfg.sim.device

    @property
    def physics_dt(self) -> float:
        return self.cfg.sim.dt

    @property
    def step_dt(self) -> float:
        return self.cfg.sim.dt * self.cfg.decimation

    @property
    def max_episode_length_s(self) -> float:
        return self.cfg.episode_length_s

    @property
    def max_episode_length(self) -> int:
        return math.ceil(self.max_episode_length_s / self.step_dt)

    @staticmethod
    def seed(seed: int = -1) -> int:
        """Seed python, numpy and torch (Isaac Lab's ``configure_seed``); returns the seed."""
        if seed == -1:
            seed = np.random.randint(0, 10_000)
        random.seed(seed)
        np.random.seed(seed)
        _torch().manual_seed(seed)
        return seed

    def render(self, recompute: bool = False) -> np.ndarray | None:
        if self.render_mode == "rgb_array" and self.cfg.version == "2.3":
            return np.zeros((32, 32, 3), dtype=np.uint8)
        return None

    def close(self) -> None:
        self._is_closed = True

    # -- schedules --------------------------------------------------------------------------------------
    def _schedule_table(self, schedule: Any, what: str):
        """Per-sub-env cycles of episode lengths as a padded (N, K) tensor plus cycle sizes (N,)."""
        torch = self._torch
        n = self.num_envs
        if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
            raise TypeError(f"{what}: a number is not a per-sub-env schedule here")
        if len(schedule) != n:
            raise ValueError(f"{what}: expected one entry per sub-env ({n}), got {len(schedule)}")
        cycles = [list(s) if isinstance(s, Sequence) else [int(s)] for s in schedule]
        if any(len(c) == 0 for c in cycles):
            raise ValueError(f"{what}: an empty list of episode lengths")
        k = max(len(c) for c in cycles)
        table = torch.zeros((n, k), dtype=torch.long)
        for i, c in enumerate(cycles):
            table[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        sizes = torch.tensor([len(c) for c in cycles], dtype=torch.long)
        return table.to(self.device), sizes.to(self.device)

    def _lengths_for(self, table, sizes, ids):
        return table[ids, self._episode_id[ids] % sizes[ids]]

    def _time_outs(self):
        limit = self.max_episode_length - (1 if self.cfg.workflow == "direct" else 0)
        return self.episode_length_buf >= limit

    def _ids_from_mask(self, mask):
        ids = mask.nonzero(as_tuple=False).squeeze(-1)  # host synchronisation, as in Isaac Lab
        return ids.int() if self.cfg.version == "3.0" else ids

    def _normalize_env_ids(self, env_ids):
        torch = self._torch
        if env_ids is None or isinstance(env_ids, slice):
            return torch.arange(self.num_envs, device=self.device)
        return torch.as_tensor(env_ids, device=self.device).long()


class FakeIsaacLabEnv(_FakeBase):
    """A batched Isaac Lab-style RL task on torch tensors (CPU by default).

    Example:
        >>> import torch
        >>> env = FakeIsaacLabEnv(FakeEnvCfg(scene=FakeSceneCfg(num_envs=3), terminate_schedule=[2, 3, 0]))
        >>> obs, extras = env.reset()
        >>> obs["policy"][:, :3].tolist()   # (sub-env, episode id, step index)
        [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]
        >>> _ = env.step(torch.zeros(3, 2))
        >>> obs, rew, term, trunc, extras = env.step(torch.zeros(3, 2))
        >>> term.tolist(), obs["policy"][0, :3].tolist()   # sub-env 0 ended and was reset in the same step
        ([True, False, False], [0.0, 1.0, 0.0])
    """

    is_vector_env: ClassVar[bool] = True

    def __init__(self, cfg: FakeEnvCfg | None = None, render_mode: str | None = None, **kwargs: Any) -> None:
        cfg = cfg if cfg is not None else FakeEnvCfg()
        super().__init__(cfg, render_mode)
        torch = self._torch
        if cfg.obs_dim <= ID_COLUMNS:
            raise ValueError(f"FakeEnvCfg.obs_dim must be > {ID_COLUMNS} (the id columns), got {cfg.obs_dim}")
        n, dev = self.num_envs, self.device
        self.reset_terminated = torch.zeros(n, dtype=torch.bool, device=dev)
        self.reset_time_outs = torch.zeros(n, dtype=torch.bool, device=dev)
        self.reward_buf = torch.zeros(n, dtype=torch.float32, device=dev)
        self.extras: dict[str, Any] = {}
        self.obs_buf: dict[str, Any] = {}
        self._state = torch.zeros((n, cfg.obs_dim - ID_COLUMNS), dtype=torch.float32, device=dev)

        sched = cfg.terminate_schedule
        self._term_prob: float | None = None
        self._term_table = None
        if isinstance(sched, float):
            self._term_prob = sched
        elif sched is not None:
            self._term_table, self._term_sizes = self._schedule_table(sched, "FakeEnvCfg.terminate_schedule")
        self._term_len = torch.zeros(n, dtype=torch.long, device=dev)

        # Spaces (numpy/float32, like Isaac Lab's; the data are torch tensors).
        d = cfg.obs_dim
        if cfg.concatenate_policy:
            policy = spaces.Box(-np.inf, np.inf, (d,), np.float32)
        else:
            policy = spaces.Dict(
                {
                    "ids": spaces.Box(-np.inf, np.inf, (ID_COLUMNS,), np.float32),
                    "state": spaces.Box(-np.inf, np.inf, (d - ID_COLUMNS,), np.float32),
                }
            )
            if cfg.image_obs is not None:
                h, w = cfg.image_obs
                policy.spaces["image"] = spaces.Box(0, 255, (h, w, 3), np.uint8)
        groups: dict[str, spaces.Space] = {"policy": policy}
        if cfg.critic_dim > 0:
            groups["critic"] = spaces.Box(-np.inf, np.inf, (cfg.critic_dim,), np.float32)
        if cfg.image_obs is not None and cfg.concatenate_policy:
            h, w = cfg.image_obs
            groups["camera"] = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.single_observation_space = spaces.Dict(groups)
        self.single_action_space = spaces.Box(-np.inf, np.inf, (cfg.action_dim,), np.float32)
        if cfg.workflow == "manager":
            self.observation_space = batch_space(self.single_observation_space, n)
        else:
            self.observation_space = batch_space(self.single_observation_space["policy"], n)
            self.state_space = batch_space(groups["critic"], n) if cfg.critic_dim > 0 else None
        self.action_space = batch_space(self.single_action_space, n)

    # -- observations -----------------------------------------------------------------------------------
    def _compute_obs(self) -> dict[str, Any]:
        """Fresh tensors every call (Isaac Lab clones each term)."""
        torch = self._torch
        cfg = self.cfg
        ids = torch.stack([self._env_index, self._episode_id, self._steps], dim=-1).float()
        obs: dict[str, Any] = {}
        if cfg.concatenate_policy:
            obs["policy"] = torch.cat([ids, self._state], dim=-1)
        else:
            obs["policy"] = {"ids": ids, "state": self._state.clone()}
        if cfg.critic_dim > 0:
            base = torch.stack([self._episode_id.float(), self._steps.float(), self._state.sum(-1)], dim=-1)
            reps = -(-cfg.critic_dim // 3)
            obs["critic"] = base.repeat(1, reps)[:, : cfg.critic_dim].contiguous()
        if cfg.image_obs is not None:
            h, w = cfg.image_obs
            pix = ((self._steps * 7 + self._env_index * 31 + self._episode_id * 13) % 256).to(torch.uint8)
            img = pix.view(-1, 1, 1, 1).expand(-1, h, w, 3).contiguous()
            if cfg.concatenate_policy:
                obs["camera"] = img
            else:
                obs["policy"]["image"] = img
        return obs

    # -- reset / step -----------------------------------------------------------------------------------
    def _reset_idx(self, ids) -> None:
        ids = ids.long()
        self._state[ids] = 0.0
        self.episode_length_buf[ids] = 0
        self._steps[ids] = 0
        self._episode_id[ids] += 1
        if self._term_table is not None:
            self._term_len[ids] = self._lengths_for(self._term_table, self._term_sizes, ids)
        if self.cfg.workflow == "manager":
            # A new dict each time, as in Isaac Lab's ``_reset_idx``.
            self.extras["log"] = {
                "Episode_Reward/alive": self._torch.tensor(float(len(ids)), device=self.device),
                "Episode_Termination/time_out": float(len(ids)),
            }

    def reset(self, env_ids: Any = None, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.seed(seed)
            self._gen.manual_seed(seed)
        ids = self._normalize_env_ids(env_ids)
        self._reset_idx(ids)
        self.obs_buf = self._compute_obs()
        self._needs_reset = False
        if self._gt is not None:
            self._gt.on_reset(ids, self._episode_id, self.obs_buf)
        return self.obs_buf, self.extras

    def step(self, action: Any):
        torch = self._torch
        action = action.to(self.device)
        n, a = self.num_envs, self.cfg.action_dim
        if tuple(action.shape) != (n, a):
            raise ValueError(f"FakeIsaacLabEnv.step: action shape {tuple(action.shape)} != {(n, a)}")
        ep_before = self._episode_id.clone() if self._gt is not None else None
        self._state.mul_(0.5).add_(0.1 * action.float().mean(-1, keepdim=True) + 0.01)
        self.episode_length_buf += 1
        self._steps += 1
        self.common_step_counter += 1
        if self._term_prob is not None:
            self.reset_terminated[:] = torch.rand(n, generator=self._gen).to(self.device) < self._term_prob
        elif self._term_table is not None:
            self.reset_terminated[:] = (self._term_len > 0) & (self._steps >= self._term_len)
        else:
            self.reset_terminated[:] = False
        self.reset_time_outs[:] = self._time_outs()
        self.reset_buf[:] = self.reset_terminated | self.reset_time_outs
        reward = self.cfg.reward_fn(self._state, action)
        if self.cfg.workflow == "direct" and self.cfg.fresh_reward:
            self.reward_buf = reward
        else:
            self.reward_buf[:] = reward
        ids = self._ids_from_mask(self.reset_buf)
        final_obs = None
        if len(ids) > 0:
            if self.cfg.compute_final_obs or self._gt is not None:
                final_obs = self._compute_obs()
            if self.cfg.compute_final_obs:
                self.extras["final_obs"] = final_obs  # full batch; never removed afterwards (stale later)
            self._reset_idx(ids)
        self.obs_buf = self._compute_obs()
        if self._gt is not None:
            self._gt.on_step(
                ep_before, action, self.reward_buf, self.reset_terminated, self.reset_time_outs,
                self.reset_buf, final_obs if final_obs is not None else self.obs_buf, self.obs_buf,
            )
        return self.obs_buf, self.reward_buf, self.reset_terminated, self.reset_time_outs, self.extras

    # -- oracle -----------------------------------------------------------------------------------------
    @property
    def ground_truth_log(self) -> list[list[GroundTruthStep]]:
        """Per sub-env, every transition so far (``final_obs`` set on done steps)."""
        if self._gt is None:
            raise RuntimeError("ground truth is off: set FakeEnvCfg.record_ground_truth=True")
        return self._gt.steps()

    def ground_truth_episodes(self) -> list[list[GroundTruthEpisode]]:
        """Per sub-env, its episodes in order (finished ones, then the running one if it has steps)."""
        if self._gt is None:
            raise RuntimeError("ground truth is off: set FakeEnvCfg.record_ground_truth=True")
        return self._gt.episodes()


class FakeIsaacLabMARLEnv(_FakeBase):
    """A batched Isaac Lab ``DirectMARLEnv`` stand-in: per-agent dicts of ``(N, ...)`` tensors.

    Each agent's obs row starts with ``(sub-env, episode id, step index, agent index)``.

    Example:
        >>> import torch
        >>> cfg = FakeMARLEnvCfg(scene=FakeSceneCfg(num_envs=2),
        ...                      agent_terminate_schedule={"cart": [1, 1], "pendulum": [2, 0]})
        >>> env = FakeIsaacLabMARLEnv(cfg)
        >>> obs, extras = env.reset()
        >>> act = {a: torch.zeros(2, 1) for a in env.possible_agents}
        >>> _, _, term, _, _ = env.step(act)
        >>> term["cart"].tolist(), env.reset_buf.tolist()   # one agent done: no sub-env reset
        ([True, True], [False, False])
        >>> _, _, term, _, _ = env.step(act)
        >>> env.reset_buf.tolist()                         # sub-env 0: all agents done
        [True, False]
    """

    def __init__(self, cfg: FakeMARLEnvCfg | None = None, render_mode: str | None = None, **kwargs: Any) -> None:
        cfg = cfg if cfg is not None else FakeMARLEnvCfg()
        if not isinstance(cfg, FakeMARLEnvCfg):
            raise TypeError(f"FakeIsaacLabMARLEnv needs a FakeMARLEnvCfg, got {type(cfg).__name__}")
        super().__init__(cfg, render_mode)
        torch = self._torch
        n, dev = self.num_envs, self.device
        self.possible_agents = list(cfg.possible_agents)
        self.agents = list(self.possible_agents)
        for a in self.possible_agents:
            if cfg.agent_obs_dims.get(a, 0) <= ID_COLUMNS + 1:
                raise ValueError(f"FakeMARLEnvCfg.agent_obs_dims[{a!r}] must be > {ID_COLUMNS + 1}")
        self.observation_spaces = {
            a: spaces.Box(-np.inf, np.inf, (cfg.agent_obs_dims[a],), np.float32) for a in self.possible_agents
        }
        self.action_spaces = {
            a: spaces.Box(-np.inf, np.inf, (cfg.agent_action_dims[a],), np.float32) for a in self.possible_agents
        }
        if cfg.state_space == -1:
            self.state_space = spaces.Box(-np.inf, np.inf, (sum(cfg.agent_obs_dims.values()),), np.float32)
        elif cfg.state_space > 0:
            self.state_space = spaces.Box(-np.inf, np.inf, (cfg.state_space,), np.float32)
        else:
            self.state_space = None
        self.terminated_dict = {a: torch.zeros(n, dtype=torch.bool, device=dev) for a in self.possible_agents}
        self.time_out_dict = {a: torch.zeros(n, dtype=torch.bool, device=dev) for a in self.possible_agents}
        self.reward_dict = {a: torch.zeros(n, dtype=torch.float32, device=dev) for a in self.possible_agents}
        self.extras: dict[str, dict] = {a: {} for a in self.possible_agents}
        self.obs_dict: dict[str, Any] = {}
        self._states = {
            a: torch.zeros((n, cfg.agent_obs_dims[a] - ID_COLUMNS - 1), dtype=torch.float32, device=dev)
            for a in self.possible_agents
        }
        self._tables = {
            a: self._schedule_table(s, f"FakeMARLEnvCfg.agent_terminate_schedule[{a!r}]")
            for a, s in cfg.agent_terminate_schedule.items()
        }
        self._term_len = {a: torch.zeros(n, dtype=torch.long, device=dev) for a in self.possible_agents}

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    @property
    def unwrapped(self) -> FakeIsaacLabMARLEnv:
        return self

    def observation_space(self, agent: str) -> spaces.Space:  # type: ignore[override]
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:  # type: ignore[override]
        return self.action_spaces[agent]

    def _compute_obs(self) -> dict[str, Any]:
        torch = self._torch
        out = {}
        for k, a in enumerate(self.possible_agents):
            ids = torch.stack(
                [self._env_index, self._episode_id, self._steps, torch.full_like(self._steps, k)], dim=-1
            ).float()
            out[a] = torch.cat([ids, self._states[a]], dim=-1)
        return out

    def state(self):
        if self.cfg.state_space == -1:
            return self._torch.cat([self.obs_dict[a] for a in self.possible_agents], dim=-1)
        if self.cfg.state_space > 0:
            return self._torch.zeros((self.num_envs, self.cfg.state_space), device=self.device)
        return None

    def _reset_idx(self, ids) -> None:
        ids = ids.long()
        for a in self.possible_agents:
            self._states[a][ids] = 0.0
            if a in self._tables:
                self._term_len[a][ids] = self._lengths_for(*self._tables[a], ids)
        self.episode_length_buf[ids] = 0
        self._steps[ids] = 0
        self._episode_id[ids] += 1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.seed(seed)
        ids = self._normalize_env_ids(None)
        self._reset_idx(ids)
        self.obs_dict = self._compute_obs()
        self.agents = list(self.obs_dict)
        if self._gt is not None:
            self._gt.on_reset(ids, self._episode_id, self.obs_dict)
        return self.obs_dict, self.extras

    def step(self, actions: dict[str, Any]):
        torch = self._torch
        n = self.num_envs
        if set(actions) != set(self.possible_agents):
            raise KeyError(f"FakeIsaacLabMARLEnv.step: actions for {sorted(actions)}, expected {self.possible_agents}")
        actions = {a: v.to(self.device) for a, v in actions.items()}
        for a, v in actions.items():
            if tuple(v.shape) != (n, self.cfg.agent_action_dims[a]):
                raise ValueError(f"action[{a!r}] shape {tuple(v.shape)} != {(n, self.cfg.agent_action_dims[a])}")
        ep_before = self._episode_id.clone() if self._gt is not None else None
        for a in self.possible_agents:
            self._states[a].mul_(0.5).add_(0.1 * actions[a].float().mean(-1, keepdim=True) + 0.01)
        self.episode_length_buf += 1
        self._steps += 1
        self.common_step_counter += 1
        time_out = self._time_outs()
        for a in self.possible_agents:
            if a in self._tables:
                self.terminated_dict[a][:] = (self._term_len[a] > 0) & (self._steps >= self._term_len[a])
            else:
                self.terminated_dict[a][:] = False
            self.time_out_dict[a][:] = time_out
            self.reward_dict[a][:] = self.cfg.reward_fn(self._states[a], actions[a])
        all_term = torch.stack(list(self.terminated_dict.values())).all(0)
        all_trunc = torch.stack(list(self.time_out_dict.values())).all(0)
        self.reset_buf[:] = all_term | all_trunc
        ids = self._ids_from_mask(self.reset_buf)
        final_obs = None
        if len(ids) > 0:
            if self.cfg.compute_final_obs or self._gt is not None:
                final_obs = self._compute_obs()
            if self.cfg.compute_final_obs:
                for a in self.possible_agents:
                    self.extras[a]["final_obs"] = final_obs[a]
            self._reset_idx(ids)
        self.obs_dict = self._compute_obs()
        self.agents = list(self.obs_dict)
        if self._gt is not None:
            self._gt.on_step(
                ep_before, actions, self.reward_dict, self.terminated_dict, self.time_out_dict,
                self.reset_buf, final_obs if final_obs is not None else self.obs_dict, self.obs_dict,
            )
        return self.obs_dict, self.reward_dict, self.terminated_dict, self.time_out_dict, self.extras

    @property
    def ground_truth_log(self) -> list[list[GroundTruthStep]]:
        if self._gt is None:
            raise RuntimeError("ground truth is off: set FakeEnvCfg.record_ground_truth=True")
        return self._gt.steps()

    def ground_truth_episodes(self) -> list[list[GroundTruthEpisode]]:
        if self._gt is None:
            raise RuntimeError("ground truth is off: set FakeEnvCfg.record_ground_truth=True")
        return self._gt.episodes()


FAKE_ENV_ID = "Isaac-Fake-v0"
FAKE_MARL_ENV_ID = "Isaac-Fake-MARL-v0"


def register_fake_envs() -> None:
    """Register the stand-ins the way Isaac Lab registers its tasks (idempotent)."""
    for env_id, cls, cfg in (
        (FAKE_ENV_ID, "FakeIsaacLabEnv", "FakeEnvCfg"),
        (FAKE_MARL_ENV_ID, "FakeIsaacLabMARLEnv", "FakeMARLEnvCfg"),
    ):
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=f"{__name__}:{cls}",
            disable_env_checker=True,
            kwargs={"env_cfg_entry_point": f"{__name__}:{cfg}"},
        )


register_fake_envs()
