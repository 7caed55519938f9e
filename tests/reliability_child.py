"""A recording process for the reliability tests (run as a script, killed or limited on purpose).

Records CartPole with deterministic seeds and actions, so the parent can regenerate every episode and
compare. Prints (flushed) ``READY``, ``F <episodes> <steps>`` after each flush() returned (that much is
durable), ``S <steps>`` now and then, and ``ERR <message>`` if recording failed with a WriterError.

Usage: python reliability_child.py PATH SEED MODE [ARGS...]
    MODE ``kill``:   record forever; commits every few hundred steps and flushes at random episode ends.
    MODE ``fsize``:  RLIMIT_FSIZE=ARG bytes; 3 small flushed shards, then blocks too big for the limit.
    MODE ``fsize-rotate``: RLIMIT_FSIZE=ARG bytes; 20k steps in small blocks, no flush until close.
    MODE ``steps``:  record ARG steps, flushing every 500 (for concurrent-writer runs), then close.
                     With a further ``handshake`` argument, after each flush at a multiple of 10,000 steps
                     it waits for a line on stdin (the parent has read the dataset): checkpoints that do
                     not depend on how fast either process runs.
"""

from __future__ import annotations

import random
import sys

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingWrapper, FlushPolicy, WriterError


def action_for(episode_seed: int, t: int) -> int:
    """The deterministic policy shared with the tests."""
    return (episode_seed * 7 + t * 3 + (t // 5)) % 2


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def main() -> None:
    path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    handshake = mode == "steps" and sys.argv[5:6] == ["handshake"]
    if mode.startswith("fsize"):
        import resource

        limit = int(sys.argv[4])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        policy = FlushPolicy(every_steps=None, every_seconds=None)
    elif mode == "kill":
        policy = FlushPolicy(every_steps=rng.choice([50, 200, 1000, None]), every_seconds=rng.choice([0.05, 0.3, None]))
    else:
        policy = FlushPolicy(every_steps=500, every_seconds=None)
    compression = rng.choice([None, "lzf", "gzip"])
    if mode == "fsize-rotate":
        from gym_aquacollect.collectors import RLCollector

        collector = RLCollector(dataset_path=path, flush_policy=policy, compression=compression, block_bytes=4096)
        env = CollectingWrapper(gym.make("CartPole-v1"), collector=collector)
    else:
        env = CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy=policy, compression=compression)
    say("READY")
    episodes = steps = 0
    ep_seed = seed * 100_000
    env.reset(seed=ep_seed)
    t = 0
    limit_steps = {"steps": int(sys.argv[4]) if mode == "steps" else 0, "fsize": 200_000,
                   "fsize-rotate": 20_000}.get(mode, 10**12)
    try:
        while steps < limit_steps:
            _, _, term, trunc, _ = env.step(action_for(ep_seed, t))
            steps += 1
            t += 1
            if term or trunc:
                episodes += 1
                if mode == "kill" and rng.random() < 0.3:
                    env.flush()
                    say("F", episodes, steps)
                ep_seed += 1
                t = 0
                env.reset(seed=ep_seed)
            if mode == "kill" and steps % 500 == 0:
                say("S", steps)
            if mode == "fsize":
                if steps in (1000, 2000, 3000):
                    # episode boundary is not needed: an open episode continues in the next shard
                    env.flush()
                    say("F", episodes, steps)
                elif steps > 3000 and steps % 20_000 == 0:
                    env.flush()  # the big shard goes past the limit: this raises
                    say("F", episodes, steps)
            if mode == "steps" and steps % 500 == 0:
                env.flush()
                say("F", episodes, steps)
                if handshake and steps % 10_000 == 0:
                    sys.stdin.readline()
    except WriterError as e:
        say("ERR", str(e).replace("\n", " "))
        sys.exit(3)
    env.close()
    say("DONE", episodes, steps)


def expected_episode(ep_seed: int) -> dict[str, np.ndarray]:
    """Regenerate the episode this script records for ``ep_seed`` (CartPole is deterministic)."""
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=ep_seed)
    observations, actions, rewards = [obs], [], []
    t = 0
    while True:
        a = action_for(ep_seed, t)
        obs, r, term, trunc, _ = env.step(a)
        observations.append(obs)
        actions.append(a)
        rewards.append(r)
        t += 1
        if term or trunc:
            break
    return {"observations": np.asarray(observations), "actions": np.asarray(actions),
            "rewards": np.asarray(rewards, dtype=np.float64), "terminated": term}



def report_figures(name: str, figures: dict) -> None:
    """Print a test's figures, and append them to ``$AQUACOLLECT_FIGURES`` (JSON lines) when set."""
    import json
    import os

    line = json.dumps({"test": name, **figures})
    print(f"\nFIGURES {line}")
    out = os.environ.get("AQUACOLLECT_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
