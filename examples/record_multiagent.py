"""Record a PettingZoo parallel env whose agents leave mid-episode, then read one agent's trajectory.

Run: ``python examples/record_multiagent.py [OUT_DIR]`` (needs pettingzoo).
"""

from __future__ import annotations

import sys
import tempfile

from gym_aquacollect import CollectingMultiAgentWrapper, load_dataset
from gym_aquacollect.testing import CountingParallelEnv


def main(out: str) -> None:
    with CollectingMultiAgentWrapper(CountingParallelEnv(agent_lifetimes=(2, 0, 4), max_steps=6), out) as env:
        for episode in range(3):
            env.reset(seed=episode)
            while env.agents:  # the user's loop, unchanged
                env.step({a: env.action_space(a).sample() for a in env.agents})
    ds = load_dataset(out)
    ep = ds[0]
    print(ds, "agents:", ds.agents, "episode reward (sum over agents):", float(ep.rewards.sum()))
    for a in ds.agents:
        ag = ep.agent(a)
        print(f"{a}: active steps {ag.steps.tolist()}, rewards {ag.rewards.tolist()}, "
              f"terminated {ag.terminations.tolist()}, truncated {ag.truncations.tolist()}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/multiagent")
