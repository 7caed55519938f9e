"""Dataset.as_torch_dataset with DataLoader worker processes (fork and spawn): each worker reads through
its own HDF5 handles and returns exactly the recorded data."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from _peers import require

from gym_aquacollect import CollectingWrapper, load_dataset

torch = require("torch")


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("torch") / "ds"
    with CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy={"every_steps": 300}) as env:
        env.reset(seed=0)
        for i in range(2000):
            *_, term, trunc, _ = env.step(i % 3 % 2)
            if term or trunc:
                env.reset()
            if i % 700 == 0:
                env.flush()  # episodes span shards
    return path


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_read_transitions(cartpole: Path, context: str) -> None:
    ds = load_dataset(cartpole)
    tds = ds.as_torch_dataset()
    assert len(tds) == ds.total_steps == 2000
    loader = torch.utils.data.DataLoader(tds, batch_size=128, shuffle=True, num_workers=2,
                                         multiprocessing_context=context, generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch in loader:
        for j in range(len(batch["episode_id"])):
            ep = ds[int(batch["episode_id"][j])]
            t = int(batch["t"][j])
            np.testing.assert_array_equal(batch["obs"][j].numpy(), ep.observations[t])
            np.testing.assert_array_equal(batch["next_obs"][j].numpy(), ep.observations[t + 1])
            assert int(batch["action"][j]) == int(ep.actions[t])
            assert float(batch["reward"][j]) == float(ep.rewards[t])
            assert bool(batch["terminated"][j]) == bool(ep.terminations[t])
            assert bool(batch["truncated"][j]) == bool(ep.truncations[t])
            seen += 1
    assert seen == 2000


def test_episodes_view_and_pickling(cartpole: Path) -> None:
    ds = load_dataset(cartpole)
    assert len(ds.manifests[0].shards) >= 3
    copy = pickle.loads(pickle.dumps(ds))  # a copy opens its own handles
    assert len(copy) == len(ds)
    for i in (0, len(ds) // 2, len(ds) - 1):
        np.testing.assert_array_equal(copy[i].observations, ds[i].observations)
    eps = ds.as_torch_dataset("episodes", as_tensors=False)
    assert len(eps) == len(ds)
    item = eps[len(ds) - 1]
    np.testing.assert_array_equal(item["observations"], ds[len(ds) - 1].observations)
    with pytest.raises(IndexError, match="out of range"):
        eps[len(ds)]
    with pytest.raises(ValueError, match="unit"):
        ds.as_torch_dataset("frames")
