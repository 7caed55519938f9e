"""Record a vectorized CartPole run with CollectingVectorWrapper and read it back.

Run: ``python examples/record_vector.py [OUT_DIR]``.
"""

from __future__ import annotations

import sys
import tempfile

import gymnasium as gym

from gym_aquacollect import CollectingVectorWrapper, load_dataset


def main(out: str) -> None:
    with CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=8), out) as envs:
        envs.reset(seed=0)
        for _ in range(500):
            envs.step(envs.action_space.sample())  # the user's loop, unchanged
    ds = load_dataset(out)
    print(ds, ds.statistics()["avg_episode_length"])
    ep = ds[0]
    print("episode 0: sub-env", ep.metadata["env_index"], "length", len(ep), "obs rows", len(ep.observations))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/cartpole_vec")
