"""collect_distributed and Dataset.to_ray on a real local Ray instance (``ray.init(num_cpus=2)``), with one
worker killed on purpose (SIGKILL from inside its policy).

Ray binds the machine's network address whatever it is told, so these tests run only in a network
namespace that holds nothing but ``lo`` (``make test`` as root makes one): elsewhere they skip, and under
``AQUACOLLECT_REQUIRE_ALL=1`` (CI) they fail.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from _peers import loopback_only, require, require_loopback
from reliability_child import report_figures

ray = require("ray")

import gym_aquacollect  # noqa: E402
from gym_aquacollect import load_dataset  # noqa: E402
from gym_aquacollect.distributed import collect_distributed  # noqa: E402
from gym_aquacollect.integrations.ray import _ensure_ray  # noqa: E402
from gym_aquacollect.storage.manifest import MANIFEST_DIR, DatasetFormatError, Manifest  # noqa: E402
from gym_aquacollect.storage.verify import verify_dataset  # noqa: E402

PKG_ROOT = str(Path(gym_aquacollect.__file__).resolve().parent.parent)
TESTS = str(Path(__file__).resolve().parent)


class KillOnce:
    """A policy whose first instance to reach ``after`` steps (across workers: an O_EXCL flag file) keeps
    stepping until its writer's manifest on disk lists at least ``durable`` steps, then SIGKILLs its own
    worker process; the flag file records the step count at the kill.

    Waiting on the manifest (an event), not on the clock, makes the kill window the same on any runner: the
    recorder hands rows to its writer in blocks (when a block fills, or about once a second), so the worker
    keeps stepping while it waits - blocking here could leave every row in the user thread. With
    ``FlushPolicy(every_steps=10_000, every_seconds=None)`` the shards committed before the kill are known,
    and the steps recorded since the last commit are never committed."""

    def __init__(self, flag: str, after: int, path: str, durable: int, give_up: int = 10_000_000) -> None:
        self.flag, self.after, self.path, self.durable, self.give_up, self.n = flag, after, path, durable, give_up, 0
        self.armed = False

    def __call__(self, obs: np.ndarray) -> int:
        self.n += 1
        if self.n == self.after:
            try:
                os.close(os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                self.armed = True
            except FileExistsError:
                pass
        if self.armed and not self.n % 64 and self._durable() >= self.durable:
            Path(self.flag).write_text(str(self.n))
            os.kill(os.getpid(), signal.SIGKILL)
        if self.armed and self.n - self.after > self.give_up:
            raise RuntimeError(f"the writer committed fewer than {self.durable} steps in {self.give_up} more steps")
        return int(obs[2] > 0)

    def _durable(self) -> int:
        from gym_aquacollect.storage.writer import _LIVE

        (writer,) = list(_LIVE)  # this worker's one writer
        manifest = Path(self.path) / MANIFEST_DIR / f"{writer.writer_id}.json"
        try:
            return sum(s.n_step_rows for s in Manifest.load(manifest).shards)
        except (FileNotFoundError, DatasetFormatError):
            return 0


@pytest.fixture(scope="module")
def local_ray():
    require_loopback("Ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([PKG_ROOT, TESTS])}})
    yield ray
    ray.shutdown()


def test_two_workers_one_dataset(local_ray, tmp_path: Path) -> None:
    path = tmp_path / "ds"
    result = collect_distributed("CartPole-v1", num_workers=2, steps=6001, path=path, seed=3, progress=False)
    assert result.ok, result.summary()
    assert [w.steps_target for w in result.workers] == [3001, 3000]
    assert [w.durable_steps for w in result.workers] == [3001, 3000]
    assert len({w.writer_id for w in result.workers}) == 2
    assert result.lost_steps == 0
    ds = load_dataset(path)
    assert ds.total_steps == 6001  # one dataset; each worker's open episode was stored truncated at close
    assert len(ds.manifests) == 2 and all(m.closed for m in ds.manifests)
    assert verify_dataset(path).ok
    ep = ds[0]
    assert ep.observations.shape == (len(ep) + 1, 4)
    # a fixed seed gives the same data again
    again = collect_distributed("CartPole-v1", num_workers=2, steps=6001, path=tmp_path / "again", seed=3,
                                progress=False)
    ds2 = again.dataset()
    assert sorted(e.metadata["seed"] or 0 for e in ds) == sorted(e.metadata["seed"] or 0 for e in ds2)
    a = sorted(float(np.sum(e.observations)) for e in ds)
    b = sorted(float(np.sum(e.observations)) for e in ds2)
    np.testing.assert_allclose(a, b)


def test_killed_worker_loses_only_its_unflushed_tail(local_ray, tmp_path: Path) -> None:
    path = tmp_path / "ds"
    flag = str(tmp_path / "killed.flag")
    steps = 2 * 60_000
    result = collect_distributed(
        "CartPole-v1", policy=KillOnce(flag, after=40_000, path=str(path), durable=20_000), num_workers=2,
        steps=steps, path=path, flush_policy={"every_steps": 10_000, "every_seconds": None}, progress=True,
    )
    assert os.path.exists(flag)
    assert not result.ok and len(result.failed_workers) == 1, result.summary()
    dead = result.failed_workers[0]
    alive = next(w for w in result.workers if w.status == "ok")
    assert dead.status == "died" and ("died" in dead.error.lower() or "Actor" in dead.error), dead.error
    assert alive.durable_steps == alive.steps_target == 60_000
    # the dead worker had committed part of its steps: the policy went on until >= 20k were listed, and a
    # commit needs 10k new steps, so the ones after the last commit never are; they are reported as lost
    killed_at = int(Path(flag).read_text())
    assert killed_at >= 40_000
    assert 20_000 <= dead.durable_steps < killed_at
    assert dead.steps_reported <= killed_at
    assert dead.lost_steps == max(0, dead.steps_reported - dead.durable_steps)
    assert result.durable_steps == alive.durable_steps + dead.durable_steps
    # the dataset stays valid and load_dataset sees one dataset with everything committed
    report = verify_dataset(path)
    assert report.ok, report.summary()
    ds = load_dataset(path)
    dsp = load_dataset(path, include_partial=True)
    assert dsp.total_steps == result.durable_steps
    assert ds.total_steps <= dsp.total_steps <= ds.total_steps + 500
    for ep in ds:  # every episode reads back whole and consistent
        assert ep.observations.shape == (len(ep) + 1, 4) and len(ep.actions) == len(ep)
    died_manifest = next(m for m in ds.manifests if m.writer_id == dead.writer_id)
    assert not died_manifest.closed
    recorded = killed_at - 1  # the policy killed its process before its killed_at-th step
    report_figures("ray_worker_killed", {
        "workers": 2, "steps_requested": steps, "killed_after_steps": recorded,
        "dead_worker_kept_steps": dead.durable_steps, "dead_worker_lost_steps": recorded - dead.durable_steps,
        "reported_lost_lower_bound": dead.lost_steps, "unreferenced_bytes": sum(
            (path / f).stat().st_size for f in report.unreferenced)})


def test_ray_servers_listen_on_loopback_only(local_ray) -> None:
    """Issue 15: inside the test run, Ray's GCS (and the node) are on 127.0.0.1, and the namespace holds
    no other interface its servers could listen on."""
    gcs = ray.get_runtime_context().gcs_address
    assert gcs.rsplit(":", 1)[0] == "127.0.0.1", gcs
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert loopback_only() == (True, "")


def test_uses_running_ray_instance(local_ray) -> None:
    assert _ensure_ray(ray, None, None) is False  # initialised: reused, not restarted
    assert ray.cluster_resources()["CPU"] == 2


def test_to_ray_transitions_and_episodes(local_ray, tmp_path: Path) -> None:
    require("ray.data")
    path = tmp_path / "ds"
    collect_distributed("CartPole-v1", num_workers=2, steps=3000, path=path, seed=1, progress=False)
    ds = load_dataset(path)
    rd = ds.to_ray()
    rows = rd.take_all()
    assert len(rows) == ds.total_steps == 3000
    rows.sort(key=lambda r: (r["episode_id"], r["t"]))
    for r in rows[:: 97]:
        ep = ds[int(r["episode_id"])]
        t = int(r["t"])
        np.testing.assert_array_equal(r["observations"], ep.observations[t])
        np.testing.assert_array_equal(r["next_observations"], ep.observations[t + 1])
        assert r["actions"] == ep.actions[t] and r["rewards"] == ep.rewards[t]
        assert bool(r["terminations"]) == bool(ep.terminations[t])
    eps = ds.to_ray("episodes").take_all()
    assert len(eps) == len(ds)
    by_id = {int(e["episode_id"]): e for e in eps}
    for i in (0, len(ds) // 2, len(ds) - 1):
        np.testing.assert_array_equal(np.asarray(by_id[i]["observations"]), ds[i].observations)
        assert int(by_id[i]["length"]) == len(ds[i])


def make_vec_cartpole(num_envs: int = 3):
    import gymnasium as gym

    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")


def test_vector_env_workers(local_ray, tmp_path: Path) -> None:
    path = tmp_path / "vec"
    result = collect_distributed(make_vec_cartpole, num_workers=2, steps=3000, path=path, seed=5, progress=False)
    assert result.ok, result.summary()
    # a vector env records up to num_envs transitions per step: a worker may overshoot by num_envs - 1
    assert all(1500 <= w.steps_reported <= 1502 for w in result.workers)
    assert [w.durable_steps for w in result.workers] == [w.steps_reported for w in result.workers]
    ds = load_dataset(path)
    assert ds.total_steps == result.durable_steps
    assert {ep.metadata["env_index"] for ep in ds} == {0, 1, 2}
    assert verify_dataset(path).ok
