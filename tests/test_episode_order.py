"""The documented episode order: per writer, the order episodes finished; writers one after the other
(in the order they started), not interleaved by finish time."""

from __future__ import annotations

import gymnasium as gym

from gym_aquacollect import CollectingWrapper, load_dataset


def _one_episode(env, seed: int) -> None:
    env.reset(seed=seed)
    while True:
        *_, term, trunc, _ = env.step(seed % 2)
        if term or trunc:
            return


def test_two_writers_in_one_directory_are_grouped_by_writer(tmp_path) -> None:
    path = tmp_path / "ds"
    policy = {"on_episode_end": True, "every_seconds": None}
    a = CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy=policy)
    _one_episode(a, 0)  # a writes first, so a's writer started first
    b = CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy=policy)
    for seed in (100, 1, 101, 2):  # finish order: a0, b100, a1, b101, a2
        _one_episode(b if seed >= 100 else a, seed)
    a.close()
    b.close()
    ds = load_dataset(path)
    assert [ep.metadata["seed"] for ep in ds] == [0, 1, 2, 100, 101]
    # each writer's episodes are one run of consecutive ids, in the order that writer finished them
    by_writer = [m.writer_id for m in ds.manifests]
    assert by_writer == sorted(by_writer) and len(by_writer) == 2
