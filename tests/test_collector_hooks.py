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


class _Sink:
    """What the sink hooks saw: a collector that keeps step counts in memory instead of writing."""

    def _init_sink(self):
        self.calls, self.rows = [], 0

    def _count(self, block):
        self.rows += block.n_step
        if block.on_written is not None:
            block.on_written()


class PublicSink(_Sink, BaseCollector):
    def __init__(self, **kw):
        super().__init__(**kw)
        self._init_sink()

    def open_writer(self):
        self.calls.append("open")
        self.writer = None

    def on_block(self, block):
        self._count(block)

    def finalize(self):
        self.calls.append("close")


class LegacySink(_Sink, BaseCollector):
    def __init__(self, **kw):
        super().__init__(**kw)
        self._init_sink()

    def _open_writer(self):
        self.calls.append("open")
        self.writer = None

    def _on_block(self, block):
        self._count(block)

    def _finalize(self):
        self.calls.append("close")


def test_sink_hooks_under_public_and_legacy_names(tmp_path):
    for cls in (PublicSink, LegacySink):
        col = cls(save_path=tmp_path)
        _drive(CollectingWrapper(gym.make("CartPole-v1"), collector=col))
        assert col.calls == ["open", "close"] and col.rows == 40, cls.__name__
        assert not (tmp_path / col.name).exists()  # no writer was opened


def test_legacy_super_calls_reach_the_parent_collectors_public_override(tmp_path):
    """A TrajectoryCollector subclass written against ``_finalize`` still gets the top-k episodes the parent's
    ``finalize`` writes when it calls ``super()._finalize()``."""
    from gym_aquacollect import TrajectoryCollector

    class Audited(TrajectoryCollector):
        finalized = 0

        def _finalize(self):
            self.finalized += 1
            super()._finalize()

    col = Audited(save_path=tmp_path, keep_top_k=2)
    env = CollectingWrapper(gym.make("CartPole-v1"), collector=col)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(300):
        *_, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.close()
    ds = load_dataset(col.dataset_path)
    assert col.finalized == 1 and len(ds) == 2
    assert sorted(ds.episode_returns.tolist()) == sorted(col.episode_returns)[-2:]
