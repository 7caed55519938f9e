"""Collector extension points are public names; a subclass written against the old private names still works."""

from __future__ import annotations

import gymnasium as gym

from gym_aquacollect import CollectingWrapper, load_dataset
from gym_aquacollect.collectors import BaseCollector


def _drive(env, steps=40):
    env.reset(seed=0)
    for _ in range(steps):
        *_, term, trunc, _ = env.step(0)
        if term or trunc:
            env.reset()
    env.close()


class PublicHooks(BaseCollector):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.ends, self.rows = [], 0

    def on_block(self, block):
        self.rows += sum(p.step_n for p in block.pieces)
        super().on_block(block)

    def on_episode_end(self, end):
        self.ends.append(end.length)
        super().on_episode_end(end)


class LegacyHooks(BaseCollector):
    """Overrides the pre-redesign names and calls ``super()`` by them."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.ends, self.rows = [], 0

    def _on_block(self, block):
        self.rows += sum(p.step_n for p in block.pieces)
        super()._on_block(block)

    def _on_episode_end(self, end):
        self.ends.append(end.length)
        super()._on_episode_end(end)


def test_public_and_legacy_hooks_see_every_row_and_episode(tmp_path):
    for i, cls in enumerate((PublicHooks, LegacyHooks)):
        col = cls(save_path=tmp_path / f"d{i}")
        _drive(CollectingWrapper(gym.make("CartPole-v1"), collector=col))
        ds = load_dataset(col.dataset_path)
        assert col.rows == ds.total_steps == 40, cls.__name__
        assert col.ends == [len(ep) for ep in ds], cls.__name__  # the open episode ends at close too


def test_episode_callbacks_add_metadata(tmp_path):
    col = BaseCollector(save_path=tmp_path / "d",
                        episode_callbacks=[lambda c, s: {"twice": 2 * s["length"]}])
    _drive(CollectingWrapper(gym.make("CartPole-v1"), collector=col))
    ds = load_dataset(col.dataset_path)
    assert [ep.metadata["twice"] for ep in ds] == [2 * len(ep) for ep in ds]
