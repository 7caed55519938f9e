"""Honest statistics (interrupted episodes apart), wall-clock time order, and the CLI's rough edges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset
from gym_aquacollect.report import timeline

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd=None, env=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=e, timeout=300)


# -- 4. honest statistics ---------------------------------------------------------------------------------
def _record_with_cut_episode(path):
    """Three complete CartPole episodes, then one cut by close() after 3 steps."""
    with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
        env.reset(seed=0)
        done = 0
        while done < 3:
            *_, te, tr, _ = env.step(1)
            if te or tr:
                done += 1
                env.reset()
        for _ in range(3):
            env.step(0)


def test_statistics_count_close_interrupted_apart(tmp_path):
    _record_with_cut_episode(tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    lengths = [len(ep) for ep in ds]
    assert lengths[-1] == 3 and min(lengths[:-1]) > 3
    s = ds.statistics()
    assert s["total_episodes"] == 4 and s["total_steps"] == sum(lengths)
    assert s["complete_episodes"] == 3 and s["interrupted_episodes"] == 1 and s["interrupted_steps"] == 3
    assert s["interrupted_by"] == {"close": 1}
    assert s["min_episode_length"] == min(lengths[:-1])  # not 3
    assert s["avg_episode_length"] == pytest.approx(np.mean(lengths[:-1]))
    assert list(ds.episode_interrupted) == ["", "", "", "close"]

    out = _cli("info", tmp_path / "ds")
    assert out.returncode == 0, out.stderr
    assert "interrupted_episodes  1" in out.stdout and "complete_episodes     3" in out.stdout
    assert f"min_episode_length    {min(lengths[:-1])}" in out.stdout


def test_statistics_when_nothing_is_complete(tmp_path):
    with CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds") as env:
        env.reset(seed=0)
        env.step(0)
        env.step(0)
    s = load_dataset(tmp_path / "ds").statistics()
    assert s["complete_episodes"] == 0 and s["interrupted_episodes"] == 1
    assert s["avg_episode_length"] == 2 and "none is complete" in s["episode_figures_over"]


def test_plot_marks_interrupted_and_runs(tmp_path):
    pytest.importorskip("matplotlib")
    _record_with_cut_episode(tmp_path / "ds")
    out = _cli("plot", tmp_path / "ds", "--out", tmp_path / "p.png")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000
    tl = timeline(load_dataset(tmp_path / "ds"))
    assert list(tl["interrupted"]) == ["", "", "", "close"]


# -- 5. time order ----------------------------------------------------------------------------------------
class _Learning(gym.Env):
    """An env whose episodes get longer over (global) time: a stand-in for a policy that learns."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    clock = [0]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        _Learning.clock[0] += 1
        self.left = 1 + _Learning.clock[0]
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.left -= 1
        return np.zeros(2, np.float32), 1.0, self.left == 0, False, {}


def test_four_writers_one_timeline(tmp_path):
    _Learning.clock[0] = 0
    path = tmp_path / "ds"
    envs = [CollectingWrapper(_Learning(), path) for _ in range(4)]  # 4 writers into one dataset
    for e in envs:
        e.reset(seed=0)
    for _ in range(400):  # round-robin, as 4 SB3 processes would interleave in time
        for e in envs:
            *_, te, tr, _ = e.step(0)
            if te or tr:
                time.sleep(0.001)
                e.reset()
    for e in envs:
        e.close()
    ds = load_dataset(path)
    assert ds.statistics()["writers"] == 4
    t = ds.episode_times
    assert np.isfinite(t).all() and (t[:, 1] >= t[:, 0]).all()
    complete = ds.episode_interrupted == ""
    by_index = ds.episode_returns[complete]
    assert np.any(np.diff(by_index) < 0)  # index order: four sawtooths, one per writer
    by_time = [float(ep.rewards.sum()) for ep in ds.iterate_episodes(order="time") if not ep.metadata.get("interrupted")]
    assert by_time == sorted(by_time)  # time order: one learning curve
    ends = [ep.metadata["t_end"] for ep in ds.iterate_episodes(order="time")]
    assert ends == sorted(ends)
    tl = timeline(ds)
    assert np.all(np.diff(tl["x"]) >= 0) and tl["x_label"].startswith("wall-clock")
    assert np.all(np.diff(tl["return"][tl["interrupted"] == ""]) >= 0)
    with pytest.raises(ValueError, match="order"):
        next(ds.iterate_episodes(order="random"))


def test_vector_episode_times(tmp_path):
    t0 = time.time()
    with CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=3), tmp_path / "v", chunk_steps=16) as envs:
        envs.reset(seed=0)
        for _ in range(150):
            envs.step(envs.action_space.sample())
    t1 = time.time()
    ds = load_dataset(tmp_path / "v")
    t = ds.episode_times
    assert np.isfinite(t).all() and (t[:, 0] >= t0 - 1e-3).all() and (t[:, 1] <= t1 + 1e-3).all()
    assert (t[:, 1] >= t[:, 0]).all()
    for i in range(3):  # per sub-env, episodes follow each other in time
        mine = t[[ep.metadata["env_index"] == i for ep in ds]]
        assert (mine[1:, 0] >= mine[:-1, 1] - 1e-6).all()


# -- 7. CLI rough edges -----------------------------------------------------------------------------------
def test_misspelled_env_id_one_line(tmp_path):
    out = _cli("record", "CartPol-v1", "--steps", "10", "--out", tmp_path / "x")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "CartPole-v1" in lines[0] and "--import" in lines[0]
    assert not (tmp_path / "x").exists()


def test_plugin_env_by_import_and_module_colon(tmp_path):
    (tmp_path / "myplugin.py").write_text(textwrap.dedent("""
        import gymnasium as gym
        gym.register("MyPlugin/Counter-v0", entry_point="gym_aquacollect.testing:CountingEnv")
    """))
    bad = _cli("record", "MyPlugin/Counter-v0", "--steps", "20", "--out", tmp_path / "a", cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--import" in bad.stderr
    ok = _cli("record", "MyPlugin/Counter-v0", "--import", "myplugin", "--steps", "20", "--out", tmp_path / "a",
              "--quiet", cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert ok.returncode == 0, ok.stderr
    assert load_dataset(tmp_path / "a").total_steps == 20
    ok2 = _cli("record", "myplugin:MyPlugin/Counter-v0", "--steps", "20", "--out", tmp_path / "b", "--quiet",
               cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert ok2.returncode == 0, ok2.stderr
    missing = _cli("record", "CartPole-v1", "--import", "no_such_plugin_xyz", "--out", tmp_path / "c")
    assert missing.returncode != 0 and "--import no_such_plugin_xyz" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.parametrize("value", ["gzip:x", "zstd", "gzip:12"])
def test_compression_error_in_cli_syntax(tmp_path, value):
    out = _cli("record", "CartPole-v1", "--compression", value, "--out", tmp_path / "x")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "argument --compression" in out.stderr and "gzip:LEVEL" in out.stderr and "compression=" not in out.stderr


def test_compression_values_work(tmp_path):
    out = _cli("record", "CartPole-v1", "--compression", "gzip:6", "--steps", "50", "--out", tmp_path / "g", "--quiet")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("value,expect", [('{"foo": 1}', "foo"), ("{foo", "not valid JSON"), ("[1]", "JSON object")])
def test_bad_env_kwargs_names_the_option(tmp_path, value, expect):
    out = _cli("record", "CartPole-v1", "--env-kwargs", value, "--steps", "10", "--out", tmp_path / "x")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "--env-kwargs" in out.stderr and expect in out.stderr


def test_writer_warnings_do_not_break_the_progress_bar(tmp_path):
    # an env whose info value changes type mid-run: the writer logs a warning during recording
    (tmp_path / "warnenv.py").write_text(textwrap.dedent("""
        import gymnasium as gym, numpy as np
        class WarnEnv(gym.Env):
            observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
            action_space = gym.spaces.Discrete(2)
            def reset(self, *, seed=None, options=None):
                self.t = 0
                return np.zeros(2, np.float32), {}
            def step(self, a):
                self.t += 1
                info = {"x": 1.0} if self.t < 5 else {"x": "text now"}
                return np.zeros(2, np.float32), 0.0, False, self.t >= 50, info
        gym.register("WarnEnv-v0", entry_point=WarnEnv)
    """))
    out = _cli("record", "WarnEnv-v0", "--import", "warnenv", "--steps", "3000", "--out", tmp_path / "w",
               cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert out.returncode == 0, out.stderr
    lines = out.stderr.split("\n")
    warn = [ln for ln in lines if "WARNING" in ln]
    assert warn, out.stderr
    for ln in warn:
        # the warning sits on its own line: no progress-bar text glued before it on the same line
        assert "recording WarnEnv-v0" not in ln.split("\r")[-1] and "it/s" not in ln and "step/s" not in ln
        assert ln.lstrip("\r ").split("|")[0].strip()[:4].isdigit()  # begins with loguru's timestamp
    assert "3000/3000" in out.stderr  # the bar still completes


def test_export_only_successful_definitions(tmp_path):
    path = tmp_path / "ds"
    with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
        for k in range(6):
            env.reset(seed=k)
            done = False
            n = 0
            while not done and n < 4 + k:
                *_, te, tr, _ = env.step(k % 2)
                done = te or tr
                n += 1
    ds = load_dataset(path)
    rets = [float(ep.rewards.sum()) for ep in ds]
    thr = sorted(rets)[len(rets) // 2]
    out = _cli("export", path, "--format", "npz", "--out", tmp_path / "r.npz", "--success-return", thr)
    assert out.returncode == 0, out.stderr
    kept = sum(r >= thr for r in rets)
    assert f"keeping {kept} of {len(rets)}" in out.stdout
    back = load_dataset(tmp_path / "r.npz")
    assert sorted(float(ep.rewards.sum()) for ep in back) == sorted(r for r in rets if r >= thr)
    out = _cli("export", path, "--format", "npz", "--out", tmp_path / "f.npz", "--success-final-reward", 1.0)
    assert out.returncode == 0 and f"keeping {len(rets)} of {len(rets)}" in out.stdout
    # nothing passes: the error says what success meant and how to define it
    out = _cli("export", path, "--format", "npz", "--out", tmp_path / "n.npz", "--success-return", 1e9)
    assert out.returncode == 2 and "return >= 1e+09" in out.stderr and "--success-key" in out.stderr
    out = _cli("export", path, "--format", "robomimic", "--out", tmp_path / "m.hdf5", "--only-successful")
    assert out.returncode == 2 and "metadata['success']" in out.stderr
    out = _cli("export", path, "--format", "npz", "--out", tmp_path / "k.npz", "--success-key", "seed")
    assert out.returncode == 0 and f"keeping {len(rets) - 1} of {len(rets)}" in out.stdout  # seed 0 is falsy


def test_empty_export_error_mentions_success_only_when_asked(tmp_path):
    from gym_aquacollect.formats import export
    from gym_aquacollect.formats._common import ExportError

    path = tmp_path / "ds"
    _record_with_cut_episode(path)
    empty = load_dataset(path).filter_episodes(lambda ep: False)
    with pytest.raises(ExportError) as e:
        export(empty, tmp_path / "a.hdf5", "robomimic")
    assert "success" not in str(e.value)
    with pytest.raises(ExportError) as e:
        export(empty, tmp_path / "b.hdf5", "robomimic", only_successful=True)
    assert "success" in str(e.value)


def test_record_json_stats_include_interrupted(tmp_path):
    out = _cli("record", "CartPole-v1", "--steps", "500", "--out", tmp_path / "j", "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["complete_episodes"] + stats["interrupted_episodes"] == stats["total_episodes"]


def test_iterate_episodes_indices_and_order(tmp_path):
    _record_with_cut_episode(tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert [ep.id for ep in ds.iterate_episodes([2, 0], order="time")] == [0, 2]
    assert [ep.id for ep in ds.iterate_episodes([2, 0])] == [2, 0]
    with pytest.raises(IndexError):
        list(ds.iterate_episodes([len(ds)]))
    with pytest.raises(IndexError):
        list(ds.iterate_episodes([len(ds)], order="time"))
