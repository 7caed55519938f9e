"""Record an env, then export the dataset for offline RL (Minari + D4RL) and teacher-student learning.

Run: ``python examples/export_offline.py [OUT_DIR]``

1. Records Pendulum-v1 with ``CollectingWrapper(env, path, teacher=...)``: a random policy acts, a simple
   "teacher" controller labels every observation with the action it would have taken (DAgger-style data).
2. ``export_for_offline_rl`` writes ``OUT/offline/minari/<id>`` (open it with
   ``MINARI_DATASETS_PATH=OUT/offline/minari`` and ``minari.load_dataset(id)``) and ``OUT/offline/d4rl.hdf5``
   (``d3rlpy.dataset.MDPDataset(observations, actions, rewards, terminals, timeouts)``).
3. ``export_for_teacher_student(..., actions="teacher")`` writes ``OUT/student/demos.hdf5`` (robomimic /
   Isaac Lab layout) whose ``actions`` are the teacher's labels.
4. ``ReplayEnv`` plays the recording back and ``replay_actions`` checks the env is deterministic.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingWrapper, ReplayEnv, load_dataset, replay_actions


def teacher(obs: np.ndarray) -> np.ndarray:
    """A PD-like swing controller for Pendulum: push against the angular velocity."""
    return np.clip(np.array([-2.0 * obs[1] - 0.5 * obs[2]], dtype=np.float32), -2.0, 2.0)


def main(out: Path) -> None:
    with CollectingWrapper(gym.make("Pendulum-v1", max_episode_steps=50), out / "data", teacher=teacher) as env:
        env.reset(seed=0)
        for _ in range(500):
            *_, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
    ds = load_dataset(out / "data")
    print(ds, ds.statistics()["avg_episode_reward"])

    paths = ds.export_for_offline_rl(out / "offline", dataset_id="aquacollect/pendulum/random-v0")
    print("minari:", paths["minari"], "\nd4rl:", paths["d4rl"])
    demos = ds.export_for_teacher_student(out / "student", actions="teacher")
    print("robomimic / Isaac Lab:", demos)

    env = ReplayEnv(ds)
    obs, _ = env.reset()
    assert np.array_equal(obs, ds[0].observations[0])
    print(replay_actions(ds, "Pendulum-v1"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
