"""A third-party exporter / importer plugged in through the ``gym_aquacollect.backends`` entry-point group.

``CsvBackend`` writes one CSV row per step (episode, step, observation columns, action, reward, flags) for
envs with flat Box observations, and reads such files back. A package ships it by declaring, in its
``pyproject.toml``::

    [project.entry-points."gym_aquacollect.backends"]
    csv = "my_package.custom_backend:CsvBackend"

after which ``aquacollect export DATA --format csv --out steps.csv`` and ``load_dataset("steps.csv")`` use it.
Without packaging, ``register_backend(CsvBackend())`` does the same for the running process, as below.

Run: ``python examples/custom_backend.py``
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.formats import MemoryDataset, MemoryEpisode, export, register_backend
from gym_aquacollect.spaces import space_from_json, space_to_json


class CsvBackend:
    """Exports / imports flat-Box-observation datasets as CSV (a header comment line holds the spaces)."""

    name = "csv"

    def export(self, dataset, out, **kwargs) -> Path:
        out = Path(out)
        obs_space, act_space = dataset.observation_space, dataset.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"the csv backend needs a 1-D Box observation space, got {obs_space}")
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            fh.write("# " + json.dumps({"obs": space_to_json(obs_space), "act": space_to_json(act_space)}) + "\n")
            w = csv.writer(fh)
            d = obs_space.shape[0]
            w.writerow(["episode", "step", *[f"o{i}" for i in range(d)], *[f"next_o{i}" for i in range(d)],
                        "action", "reward", "terminated", "truncated"])
            for k, ep in enumerate(dataset.iterate_episodes()):
                for t in range(len(ep)):
                    w.writerow([k, t, *ep.observations[t].tolist(), *ep.observations[t + 1].tolist(),
                                json.dumps(np.asarray(ep.actions[t]).tolist()), float(ep.rewards[t]),
                                int(ep.terminations[t]), int(ep.truncations[t])])
        tmp.replace(out)
        return out

    def can_load(self, path) -> bool:
        return str(path).endswith(".csv") and Path(path).is_file()

    def load(self, path, **kwargs) -> MemoryDataset:
        with open(path) as fh:
            head = json.loads(fh.readline()[2:])
            rows = list(csv.DictReader(fh))
        obs_space, act_space = space_from_json(head["obs"]), space_from_json(head["act"])
        d = obs_space.shape[0]
        episodes = []
        for k in sorted({int(r["episode"]) for r in rows}):
            rs = [r for r in rows if int(r["episode"]) == k]
            obs = [[float(r[f"o{i}"]) for i in range(d)] for r in rs] + [[float(rs[-1][f"next_o{i}"]) for i in range(d)]]
            episodes.append(MemoryEpisode(
                k, np.asarray(obs, obs_space.dtype), np.asarray([json.loads(r["action"]) for r in rs]),
                np.asarray([float(r["reward"]) for r in rs]), np.asarray([r["terminated"] == "1" for r in rs]),
                np.asarray([r["truncated"] == "1" for r in rs])))
        return MemoryDataset(episodes, obs_space, act_space, metadata={"source_format": "csv"}, path=path)


def main() -> None:
    register_backend(CsvBackend(), replace=True)
    tmp = Path(tempfile.mkdtemp())
    with CollectingWrapper(gym.make("CartPole-v1"), tmp / "data") as env:
        env.reset(seed=0)
        for _ in range(200):
            *_, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
    ds = load_dataset(tmp / "data")
    path = export(ds, tmp / "steps.csv", "csv")
    back = load_dataset(path)
    print(f"wrote {path}: {back.total_steps} steps in {len(back)} episodes (source: {ds.total_steps} steps)")


if __name__ == "__main__":
    main()
