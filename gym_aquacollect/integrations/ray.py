"""Scale-out on Ray: many workers recording into one dataset, and Ray Data views of a dataset.

Contents:
    * :func:`collect_distributed` - Ray actors each run the env under :class:`~gym_aquacollect.CollectingWrapper`
      (or ``CollectingVectorWrapper`` for vector envs) and write their own shards into one dataset
      directory; a progress bar is fed by the workers; a worker that dies loses at most its unflushed tail.
    * :class:`DistributedResult` / :class:`WorkerReport` - what a run recorded, per worker, and what was lost.
    * :func:`to_ray` - a ``ray.data.Dataset`` of transitions or episodes (``Dataset.to_ray()``).

Ray is an optional extra: ``pip install "gym_aquacollect[ray]"``. Importing this module does not import
Ray; calling its functions without Ray raises an ImportError that says what to install.

Why this is safe: each worker is its own writer (its own manifest and shard names), so workers never
coordinate or lock; a shard becomes part of the dataset only once its writer's manifest lists it (after
close + fsync + CRC32). A worker killed at any moment leaves every committed shard valid; what it had not
committed yet (at most ``flush_policy`` worth of steps) is lost and reported in the result.

Multi-node clusters: the dataset directory must be a filesystem every node mounts at the same path (NFS,
Lustre, a cloud file share, ...). Start the cluster (``ray start --head`` on one node,
``ray start --address=HEAD:6379`` on the others), then in the driver::

    import ray
    ray.init(address="auto")        # or "ray://HEAD:10001" with Ray Client; collect_distributed reuses it
    result = collect_distributed("CartPole-v1", num_workers=64, steps=100_000_000, path="/shared/cartpole")

Install gym_aquacollect (and the env's packages) in the same environment on every node, or pass
``runtime_env={"pip": [...]}`` via ``ray_init_kwargs`` when this call starts Ray itself. Each worker
needs ``num_cpus_per_worker`` CPUs (default 1); use a fraction to pack more workers than cores.

Example:
    >>> import tempfile
    >>> result = collect_distributed("CartPole-v1", num_workers=2, steps=2000,
    ...                              path=tempfile.mkdtemp() + "/ds", progress=False)  # doctest: +SKIP
    >>> result.ok, result.dataset().total_steps  # doctest: +SKIP
    (True, 2000)
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gym_aquacollect.collectors.base import DEFAULT_COMPRESSION
from gym_aquacollect.logs import logger
from gym_aquacollect.storage.manifest import MANIFEST_DIR, DatasetFormatError, Manifest
from gym_aquacollect.storage.writer import FlushPolicy

__all__ = ["collect_distributed", "DistributedResult", "WorkerReport", "to_ray", "DEFAULT_WORKER_FLUSH"]

#: Flush policy of workers unless one is given: at most ~5 s of each worker's data is at risk.
DEFAULT_WORKER_FLUSH = FlushPolicy(every_steps=None, every_seconds=5.0)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(
            "gym_aquacollect.distributed needs Ray: pip install \"gym_aquacollect[ray]\" "
            "(or pip install \"ray[default,data]\")"
        ) from None
    return ray


@dataclass
class WorkerReport:
    """What one worker did.

    Attributes:
        index: the worker's index (0..num_workers-1).
        status: ``"ok"`` or ``"died"`` (the actor process was lost: killed, crashed, node down) or
            ``"failed"`` (an exception in the worker; ``error`` says which).
        steps_target: transitions it was asked to record.
        steps_reported: transitions it last reported recording (reports every 0.1 s).
        durable_steps: step rows in its committed shards (what survives, including the rows of an
            episode it had not finished, readable with ``load_dataset(path, include_partial=True)``).
        durable_episodes: finished episodes in its committed shards.
        lost_steps: for a worker that died, ``steps_reported - durable_steps`` (a lower bound: steps after
            its last report, sent every 0.1 s, are also lost); 0 otherwise.
        writer_id: its writer (its manifest is ``manifests/<writer_id>.json``).
        node: host name it ran on.
        error: the error, for a worker that did not finish.
    """

    index: int
    status: str = "ok"
    steps_target: int = 0
    steps_reported: int = 0
    durable_steps: int = 0
    durable_episodes: int = 0
    lost_steps: int = 0
    writer_id: str | None = None
    node: str | None = None
    error: str | None = None


@dataclass
class DistributedResult:
    """The outcome of :func:`collect_distributed`.

    Example:
        >>> r = DistributedResult(path=Path("d"), steps_requested=10)
        >>> r.ok, r.lost_steps
        (True, 0)
    """

    path: Path
    steps_requested: int
    workers: list[WorkerReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every worker finished."""
        return all(w.status == "ok" for w in self.workers)

    @property
    def failed_workers(self) -> list[WorkerReport]:
        return [w for w in self.workers if w.status != "ok"]

    @property
    def durable_steps(self) -> int:
        return sum(w.durable_steps for w in self.workers)

    @property
    def lost_steps(self) -> int:
        """Steps recorded by workers that died but never committed (a lower bound)."""
        return sum(w.lost_steps for w in self.workers)

    @property
    def steps_per_second(self) -> float:
        return self.durable_steps / self.seconds if self.seconds > 0 else 0.0

    def dataset(self, **kwargs: Any) -> Any:
        """``load_dataset(self.path, **kwargs)``."""
        from gym_aquacollect.data.dataset import load_dataset

        return load_dataset(self.path, **kwargs)

    def summary(self) -> str:
        lines = [f"{self.path}: {self.durable_steps} steps durable of {self.steps_requested} requested, "
                 f"{len(self.workers)} workers, {self.seconds:.1f} s ({self.steps_per_second:,.0f} steps/s)"]
        for w in self.failed_workers:
            lines.append(f"  worker {w.index} {w.status} on {w.node}: {w.error}; kept {w.durable_steps} steps "
                         f"({w.durable_episodes} episodes), lost at least {w.lost_steps}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "steps_requested": self.steps_requested, "seconds": self.seconds,
                "ok": self.ok, "durable_steps": self.durable_steps, "lost_steps": self.lost_steps,
                "workers": [asdict(w) for w in self.workers]}


# -- worker side ---------------------------------------------------------------------------------------
def _make_env(env_id_or_fn: str | Callable[..., Any], env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    if isinstance(env_id_or_fn, str):
        return gym.make(env_id_or_fn, **env_kwargs)
    return env_id_or_fn(**env_kwargs)


class _Progress:
    """Ray actor the workers report to (fire-and-forget); the driver polls it for the progress bar."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}
        self.episodes: dict[int, int] = {}
        self.writers: dict[int, tuple[str, str]] = {}

    def register(self, index: int, writer_id: str, node: str) -> None:
        self.writers[index] = (writer_id, node)

    def report(self, index: int, steps: int, episodes: int) -> None:
        self.steps[index] = steps
        self.episodes[index] = episodes

    def get(self) -> tuple[dict[int, int], dict[int, int], dict[int, tuple[str, str]]]:
        return self.steps, self.episodes, self.writers


class _Worker:
    """Ray actor: records ``steps`` transitions of one env into the shared dataset directory."""

    def __init__(self, index: int, path: str, env_id_or_fn: Any, env_kwargs: dict[str, Any], policy: Any,
                 seed: int | None, wrapper_kwargs: dict[str, Any], progress: Any) -> None:
        self.index, self.path, self.progress = index, path, progress
        self.env_id_or_fn, self.env_kwargs = env_id_or_fn, env_kwargs
        self.policy, self.seed, self.wrapper_kwargs = policy, seed, wrapper_kwargs

    def run(self, steps: int, report_seconds: float = 0.1) -> dict[str, Any]:
        from gym_aquacollect.wrappers.factory import make_collecting
        from gym_aquacollect.wrappers.single import CollectingWrapper

        env = _make_env(self.env_id_or_fn, self.env_kwargs)
        meta = dict(self.wrapper_kwargs.pop("metadata", None) or {})
        meta["distributed"] = {"worker": self.index}
        env = make_collecting(env, self.path, metadata=meta, **self.wrapper_kwargs)
        vector = not isinstance(env, CollectingWrapper)
        writer = env.collector.writer
        self.progress.register.remote(self.index, writer.writer_id, socket.gethostname())
        seed = None if self.seed is None else int(self.seed) + 1_000_003 * self.index
        env.action_space.seed(seed)
        policy = self.policy or (lambda obs: env.action_space.sample())
        n = episodes = 0
        last = time.monotonic()
        try:
            obs, _ = env.reset(seed=seed)
            width = int(getattr(env, "num_envs", 1)) if vector else 1
            mode = str(getattr(_autoreset_mode(env), "value", _autoreset_mode(env)))
            if vector and mode not in ("NextStep", "SameStep", "None"):
                raise NotImplementedError(f"collect_distributed runs vector envs with autoreset (NEXT_STEP or "
                                          f"SAME_STEP), this one has autoreset mode {mode}")
            was_done = np.zeros(width, dtype=bool)
            while n < steps:
                obs, _, term, trunc, _ = env.step(policy(obs))
                if vector:
                    done = np.logical_or(term, trunc)
                    # NEXT_STEP autoreset: a sub-env that ended last step only resets now (no transition)
                    n += width - int(np.count_nonzero(was_done)) if mode != "SameStep" else width
                    was_done = done if mode != "SameStep" else was_done
                    episodes += int(np.count_nonzero(done))
                    continue
                n += 1
                if term or trunc:
                    episodes += 1
                    obs, _ = env.reset()
                now = time.monotonic()
                if now - last > report_seconds:
                    last = now
                    self.progress.report.remote(self.index, n, episodes)
        finally:
            env.close()
        self.progress.report.remote(self.index, n, episodes)
        return {"steps": n, "episodes": episodes, "writer_id": writer.writer_id, "node": socket.gethostname()}


def _autoreset_mode(env: Any) -> Any:
    e = env
    while e is not None:
        mode = (getattr(e, "metadata", None) or {}).get("autoreset_mode")
        if mode is not None:
            return mode
        e = getattr(e, "env", None)
    return None


# -- driver side ---------------------------------------------------------------------------------------
def _durable(path: Path, writer_id: str | None) -> tuple[int, int]:
    if writer_id is None:
        return 0, 0
    try:
        m = Manifest.load(path / MANIFEST_DIR / f"{writer_id}.json")
    except (FileNotFoundError, DatasetFormatError) as e:
        logger.warning("gym_aquacollect: cannot read the manifest of writer {}: {}", writer_id, e)
        return 0, 0
    return sum(s.n_step_rows for s in m.shards), sum(s.n_episodes_ended for s in m.shards)


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(int(total), parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _ensure_ray(ray: Any, address: str | None, init_kwargs: dict[str, Any] | None) -> bool:
    """Connect to a running Ray (``address``, ``RAY_ADDRESS`` or a local ``ray start``), else start one.
    Returns True when this call initialised Ray."""
    if ray.is_initialized():
        return False
    kwargs = dict(init_kwargs or {})
    if address is None and not os.environ.get("RAY_ADDRESS"):
        # a local instance we may start: make sure its workers import this very gym_aquacollect
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        rt = dict(kwargs.get("runtime_env") or {})
        env_vars = dict(rt.get("env_vars") or {})
        pp = env_vars.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        if pkg_parent not in pp.split(os.pathsep):
            env_vars["PYTHONPATH"] = pkg_parent + (os.pathsep + pp if pp else "")
        rt["env_vars"] = env_vars
        kwargs["runtime_env"] = rt
    ray.init(address=address, **kwargs)
    logger.info("gym_aquacollect: Ray initialised ({})", address or "local or existing instance")
    return True


def collect_distributed(
    env_id_or_fn: str | Callable[..., Any],
    policy: Callable[[Any], Any] | None = None,
    num_workers: int = 2,
    steps: int = 10_000,
    path: str | os.PathLike | None = None,
    *,
    env_kwargs: dict[str, Any] | None = None,
    seed: int | None = 0,
    flush_policy: FlushPolicy | dict[str, Any] | None = None,
    compression: Any = DEFAULT_COMPRESSION,
    record_infos: bool = True,
    metadata: dict[str, Any] | None = None,
    num_cpus_per_worker: float = 1.0,
    ray_address: str | None = None,
    ray_init_kwargs: dict[str, Any] | None = None,
    actor_options: dict[str, Any] | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> DistributedResult:
    """Record ``steps`` transitions in total with ``num_workers`` Ray actors into one dataset directory.

    Args:
        env_id_or_fn: a Gymnasium env id, or a picklable callable returning an env (a single env or a
            vector env) called in each worker as ``env_fn(**env_kwargs)``.
        policy: a picklable callable ``policy(observation) -> action`` (for a vector env: batched); None
            samples the action space.
        num_workers: Ray actors (each its own process and writer).
        steps: total transitions across workers (split evenly; a vector env records ``num_envs`` per step).
        path: the dataset directory; must be reachable at this path from every worker (shared filesystem
            on a multi-node cluster). None: ``./aquacollect-data/distributed-<time>``.
        env_kwargs: keyword arguments for ``gym.make`` / ``env_fn``.
        seed: base seed (worker ``i`` resets with ``seed + 1_000_003 * i`` first); None: unseeded.
        flush_policy: how often workers commit (default :data:`DEFAULT_WORKER_FLUSH`: every 5 s); bounds
            what a dying worker loses.
        compression, record_infos, metadata: as for :class:`~gym_aquacollect.CollectingWrapper`; each
            worker's episodes also get ``metadata["distributed"]["worker"]`` in the dataset metadata.
        num_cpus_per_worker: CPUs Ray reserves per actor (fractions pack more workers onto fewer cores).
        ray_address: connect to this Ray cluster when Ray is not initialised yet (None: ``RAY_ADDRESS``, a
            cluster started with ``ray start`` on this machine, else a new local instance).
        ray_init_kwargs: more ``ray.init`` arguments when this call initialises Ray.
        actor_options: more ``.options(...)`` for the worker actors (e.g. ``{"resources": {...}}``).
        progress: show a tqdm progress bar fed by the workers.
        timeout: give up waiting after this many seconds (workers still running are killed and reported).

    Returns:
        :class:`DistributedResult`: per-worker steps, what is durable and what was lost. A worker that dies
        does not raise: its committed shards stay in the dataset and the result reports it.
    """
    ray = _import_ray()
    from tqdm.auto import tqdm

    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if steps < num_workers:
        raise ValueError(f"steps ({steps}) must be at least num_workers ({num_workers})")
    if path is None:
        path = Path("aquacollect-data") / f"distributed-{time.strftime('%Y%m%d-%H%M%S')}"
        logger.info("gym_aquacollect: no path given; recording to {}", Path(path).resolve())
    path = Path(path).resolve()
    _ensure_ray(ray, ray_address, ray_init_kwargs)
    wrapper_kwargs = {"flush_policy": FlushPolicy.coerce(flush_policy or DEFAULT_WORKER_FLUSH),
                      "compression": compression, "record_infos": record_infos, "metadata": metadata}

    progress_actor = ray.remote(num_cpus=0)(_Progress).remote()
    worker_cls = ray.remote(_Worker).options(num_cpus=num_cpus_per_worker, max_restarts=0, max_task_retries=0,
                                             **(actor_options or {}))
    targets = _split(steps, num_workers)
    actors = [worker_cls.remote(i, str(path), env_id_or_fn, dict(env_kwargs or {}), policy, seed,
                                dict(wrapper_kwargs), progress_actor) for i in range(num_workers)]
    refs = {actor.run.remote(n): i for i, (actor, n) in enumerate(zip(actors, targets))}
    reports = [WorkerReport(index=i, steps_target=n) for i, n in enumerate(targets)]
    t0 = time.monotonic()
    bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"collect x{num_workers}", smoothing=0.1)
    pending = list(refs)
    last_seen: tuple[dict[int, int], dict[int, int], dict[int, tuple[str, str]]] = ({}, {}, {})
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            for ref in done:
                w = reports[refs[ref]]
                try:
                    out = ray.get(ref)
                    w.steps_reported, w.writer_id, w.node = out["steps"], out["writer_id"], out["node"]
                except ray.exceptions.RayActorError as e:
                    w.status, w.error = "died", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                except ray.exceptions.RayTaskError as e:
                    w.status, w.error = "failed", f"{type(e.cause).__name__}: {e.cause}"[:500]
            try:
                last_seen = ray.get(progress_actor.get.remote(), timeout=5)
            except Exception as e:  # noqa: BLE001 - progress only
                logger.debug("gym_aquacollect: progress poll failed: {}", e)
            bar.n = min(steps, sum(last_seen[0].values()))
            bar.set_postfix(episodes=sum(last_seen[1].values()), refresh=False)
            bar.refresh()
            if timeout is not None and time.monotonic() - t0 > timeout and pending:
                for ref in pending:
                    w = reports[refs[ref]]
                    w.status, w.error = "failed", f"timed out after {timeout} s"
                    ray.kill(actors[w.index])
                pending = []
    finally:
        bar.close()
    seconds = time.monotonic() - t0
    steps_seen, _, writers = last_seen
    for w in reports:
        if w.writer_id is None and w.index in writers:
            w.writer_id, w.node = writers[w.index]
        if w.status != "ok":
            w.steps_reported = steps_seen.get(w.index, 0)
        w.durable_steps, w.durable_episodes = _durable(path, w.writer_id)
        if w.status != "ok":
            w.lost_steps = max(0, w.steps_reported - w.durable_steps)
            logger.warning("gym_aquacollect: worker {} {}: {}; its {} committed steps are kept, at least {} were "
                           "lost", w.index, w.status, w.error, w.durable_steps, w.lost_steps)
    for actor in actors:
        ray.kill(actor)
    ray.kill(progress_actor)
    result = DistributedResult(path=path, steps_requested=int(steps), workers=reports, seconds=seconds)
    logger.info("gym_aquacollect: {}", result.summary())
    return result


# -- Ray Data ------------------------------------------------------------------------------------------
def _episode_rows(ds: Any, i: int, unit: str) -> list[dict[str, Any]]:
    ep = ds[i]
    obs = {n: ep.column("obs", n) for n in ds._obs_names}
    act = {n: ep.column("step", n) for n in ds._act_names}
    rew, term, trunc = ep.rewards, ep.terminations, ep.truncations
    if unit == "episodes":
        row: dict[str, Any] = {"episode_id": i, "length": len(ep)}
        row.update(obs)
        row.update(act)
        row.update({"rewards": rew, "terminations": term, "truncations": trunc})
        return [row]
    rows = []
    for t in range(len(ep)):
        row = {"episode_id": i, "t": t}
        for n, col in obs.items():
            row[n] = col[t]
            row["next_" + n] = col[t + 1]
        for n, col in act.items():
            row[n] = col[t]
        row["rewards"], row["terminations"], row["truncations"] = rew[t], bool(term[t]), bool(trunc[t])
        rows.append(row)
    return rows


class _EpisodeReader:
    """Ray Data callable class: one Dataset (and so one set of HDF5 handles) per Ray worker process."""

    def __init__(self, ds_ref: Any, unit: str) -> None:
        self.ds = ds_ref
        self.unit = unit

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for i in batch["episode"].tolist():
            rows.extend(_episode_rows(self.ds, int(i), self.unit))
        if not rows:
            return {}
        return {k: _stack([r[k] for r in rows]) for k in rows[0]}


def _stack(values: list[Any]) -> Any:
    if values and isinstance(values[0], np.ndarray) and values[0].dtype.kind == "O":
        return np.asarray(values, dtype=object)
    if values and isinstance(values[0], np.ndarray) and len({v.shape for v in values}) > 1:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.asarray(values)


def to_ray(dataset: Any, unit: str = "transitions", *, episodes_per_task: int = 16) -> Any:
    """A ``ray.data.Dataset`` of a dataset's transitions or episodes, read in parallel by Ray workers.

    Columns use the dataset's flat column names: ``observations`` (or ``observations/<key>`` for
    structured spaces), ``next_observations...`` (transitions only), ``actions...``, ``rewards``,
    ``terminations``, ``truncations``, ``episode_id``, and ``t`` (transitions) or ``length`` (episodes:
    whole arrays per row, T+1 observations).

    Args:
        dataset: a :class:`~gym_aquacollect.Dataset` (it is pickled to the workers, which reopen its files:
            the path must be reachable from them).
        unit: ``"transitions"`` or ``"episodes"``.
        episodes_per_task: episodes per read task (the unit of parallelism).
    """
    ray = _import_ray()
    if unit not in ("transitions", "episodes"):
        raise ValueError(f"unit must be 'transitions' or 'episodes', got {unit!r}")
    try:
        import ray.data as ray_data
    except ImportError as e:
        raise ImportError(f"Dataset.to_ray needs Ray Data: pip install \"ray[data]\" ({e})") from None
    if not ray.is_initialized():
        _ensure_ray(ray, None, None)
    n = len(dataset)
    items = ray_data.from_items([{"episode": i} for i in range(n)], override_num_blocks=max(1, -(-n // episodes_per_task)))
    return items.map_batches(_EpisodeReader, fn_constructor_args=(dataset, unit), batch_size=episodes_per_task,
                             batch_format="numpy", concurrency=(1, max(1, int(ray.available_resources().get("CPU", 1)))))
