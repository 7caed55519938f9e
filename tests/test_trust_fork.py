"""Issue 9, item 7: ``os.fork()`` after the recording wrapper was created.

The writer thread does not exist in a forked child, so the child's data could never be stored. The
child gets a clear :class:`~gym_aquacollect.WriterError` at its first step (documented choice); the
parent's recording is unaffected. Today the child accepts thousands of steps, closes without error
and drops them all.
"""

from __future__ import annotations

import os
import sys

import gymnasium as gym
import numpy as np
import pytest

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _in_child(fn) -> str:
    """Run ``fn()`` in a forked child; return what it reports (its exception's text or 'OK')."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            fn()
            msg = "OK"
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            msg = f"{type(e).__name__}: {e}"
        os.write(w, msg.encode()[:4000])
        os.close(w)
        sys.stdout.flush()
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        msg = f.read()
    os.waitpid(pid, 0)
    return msg


def test_forked_child_gets_a_clear_error_at_its_first_step(tmp_path):
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds")
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)

    def child():
        env.step(1)  # the first step in the child

    msg = _in_child(child)
    assert msg.startswith("WriterError") and "forked" in msg and "child" in msg, msg
    # the parent goes on recording, untouched
    for _ in range(3):
        env.step(0)
    env.close()
    ds = load_dataset(tmp_path / "ds")
    assert ds.total_steps == 8


def test_forked_child_fails_for_vector_envs_too(tmp_path):
    env = CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"),
                                  tmp_path / "ds")
    env.reset(seed=0)
    env.step(np.zeros(2, np.int64))
    msg = _in_child(lambda: env.step(np.zeros(2, np.int64)))
    assert msg.startswith("WriterError") and "forked" in msg, msg
    env.step(np.zeros(2, np.int64))
    env.close()
    assert load_dataset(tmp_path / "ds").total_steps == 4


def test_forked_child_that_does_not_record_exits_cleanly(tmp_path):
    """A fork that never touches the wrapper (a data-loader worker) is not disturbed at exit."""
    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "ds")
    env.reset(seed=0)
    env.step(0)
    assert _in_child(lambda: None) == "OK"
    env.step(0)
    env.close()
    assert load_dataset(tmp_path / "ds").total_steps == 2


def test_wrapper_created_in_the_child_records(tmp_path):
    def child():
        with CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "child") as e:
            e.reset(seed=1)
            for _ in range(7):
                e.step(0)

    env = CollectingWrapper(gym.make("CartPole-v1"), tmp_path / "parent")
    env.reset(seed=0)
    assert _in_child(child) == "OK"
    env.close()
    assert load_dataset(tmp_path / "child").total_steps == 7
