"""The writer thread and the recording loop share the GIL: the loop lets a busy writer run
(DatasetWriter.let_run)."""

from __future__ import annotations

import threading
from pathlib import Path

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset
from gym_aquacollect.storage import writer as writer_mod


def test_let_run_yields_only_while_the_writer_has_work(tmp_path: Path, monkeypatch) -> None:
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds")
    w = env.collector.writer
    slept: list[float] = []
    monkeypatch.setattr(writer_mod.time, "sleep", lambda s: slept.append(s))
    assert not w.busy
    w.let_run()
    assert slept == []
    gate = threading.Event()
    w.submit(lambda _w: gate.wait(10))  # the writer is now busy until the gate opens
    assert w.busy
    w.let_run()
    assert slept == [0]
    gate.set()
    monkeypatch.undo()
    w.flush()
    assert not w.busy
    env.close()


def _busy_and_counted(writer, monkeypatch) -> tuple[list[int], threading.Event]:
    """Keep ``writer`` busy until the returned gate opens; count the loop's ``let_run`` calls."""
    calls: list[int] = []
    real = writer.let_run
    monkeypatch.setattr(writer, "let_run", lambda: (calls.append(1), real())[1])
    gate = threading.Event()
    writer.submit(lambda _w: gate.wait(10))
    return calls, gate


def test_the_recording_loop_lets_a_busy_writer_run(tmp_path: Path, monkeypatch) -> None:
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds")
    calls, gate = _busy_and_counted(env.collector.writer, monkeypatch)
    env.reset(seed=0)
    for _ in range(2048):
        _, _, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset()
    gate.set()
    env.close()
    assert len(calls) >= 4, "the step loop did not offer the busy writer the GIL"
    assert load_dataset(tmp_path / "ds").total_steps == 2048


def test_vector_loop_lets_a_busy_writer_run(tmp_path: Path, monkeypatch) -> None:
    env = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=4), tmp_path / "v")
    calls, gate = _busy_and_counted(env._rec.writer, monkeypatch)
    env.reset(seed=0)
    for _ in range(64):
        env.step(np.zeros(4, np.int64))
    gate.set()
    env.close()
    assert len(calls) >= 4
