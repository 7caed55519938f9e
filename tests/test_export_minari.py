"""Minari export / import, checked with the real minari 0.5.4 reader."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from _peers import require

from gym_aquacollect.formats import ExportError
from gym_aquacollect.formats.minari import minari_space_json, read_minari, to_minari, write_minari
from tests._formats_util import cartpole, nested

minari = require("minari")
require("PIL")


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari_root"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _jpeg_roundtrip(frames, quality=95):
    from PIL import Image

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    return np.stack(out)


def test_cartpole_minari_roundtrip_with_real_minari(minari_root, tmp_path):
    src = cartpole(4, tmp_path=tmp_path)
    path = to_minari(src, "aqua/cartpole/random-v0")
    assert path == minari_root / "aqua/cartpole/random-v0"
    ds = minari.load_dataset("aqua/cartpole/random-v0")
    assert len(ds) == 4 and ds.total_steps == src.total_steps
    assert ds.observation_space == src.observation_space and ds.action_space == src.action_space
    for i, ours in enumerate(src.iterate_episodes()):
        ep = ds[i]
        T = len(ours)
        assert ep.observations.shape == (T + 1, 4) and ep.actions.shape == (T,)
        np.testing.assert_array_equal(ep.observations, ours.observations)
        np.testing.assert_array_equal(ep.actions, ours.actions)
        np.testing.assert_array_equal(ep.rewards, ours.rewards)
        np.testing.assert_array_equal(ep.terminations, ours.terminations)
        np.testing.assert_array_equal(ep.truncations, ours.truncations)
    meta = json.loads((path / "data/metadata.json").read_text())
    assert minari.serialization.deserialize_space(meta["observation_space"]) == src.observation_space
    assert meta["observation_space"] == minari.serialization.serialize_space(src.observation_space)
    assert meta["action_space"] == minari.serialization.serialize_space(src.action_space)
    assert "aqua/cartpole/random-v0" in minari.list_local_datasets()
    # episode attr total_steps is what filtered datasets sum
    sub = ds.filter_episodes(lambda e: bool(e.terminations[-1]))
    assert sub.total_steps == sum(len(e) for e in src.iterate_episodes() if e.terminations[-1])
    assert ds.sample_episodes(2)[0].id in range(4)
    env = ds.recover_environment()
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, src[0].observations[0])  # spec recreates CartPole; seed 0 = episode 0


def test_nested_image_dataset_jpeg_rule_and_import(minari_root, tmp_path):
    src = nested(3, tmp_path=tmp_path)
    to_minari(src, "aqua/nested-v1")
    ds = minari.load_dataset("aqua/nested-v1")
    assert ds.observation_space == src.observation_space
    for i, ours in enumerate(src.iterate_episodes()):
        ep = ds[i]
        T = len(ours)
        np.testing.assert_array_equal(ep.observations["pos"], ours.observations["pos"])
        np.testing.assert_array_equal(ep.observations["t"][0], ours.observations["t"][0])
        assert list(ep.observations["t"][1]) == ours.observations["t"][1]
        img = ep.observations["img"]
        assert img.dtype == np.uint8 and img.shape == (T + 1, 32, 32, 3)
        # lossy: exactly what Pillow's JPEG round trip of the same frame gives
        np.testing.assert_array_equal(img, _jpeg_roundtrip(ours.observations["img"]))
        assert np.abs(img.astype(int) - ours.observations["img"]).mean() < 3
        np.testing.assert_array_equal(ep.actions["move"], ours.actions["move"])
        np.testing.assert_array_equal(ep.actions["grip"], ours.actions["grip"])
        assert ep.infos["k"].shape == (T + 1,)
        np.testing.assert_array_equal(ep.infos["nested"]["x"], ours.infos["nested"]["x"])
        np.testing.assert_array_equal(ep.infos["_sometimes"], ours.infos["_sometimes"])
    # our own importer reads it back (same lossy images, everything else exact)
    back = read_minari("aqua/nested-v1")
    assert len(back) == 3 and back.total_steps == src.total_steps
    ep0 = back[0]
    np.testing.assert_array_equal(ep0.observations["img"], _jpeg_roundtrip(src[0].observations["img"]))
    assert ep0.observations["t"][1] == src[0].observations["t"][1]
    assert ep0.metadata["seed"] == 0


def test_raw_images_need_minari_054(minari_root, tmp_path):
    src = nested(2, channels=4, tmp_path=tmp_path)  # RGBA-like frames cannot be JPEG-encoded
    with pytest.raises(ExportError, match="jpeg_encoding=False"):
        to_minari(src, "aqua/rgba-v0")
    assert not (minari_root / "aqua/rgba-v0").exists()  # nothing half-written under the final name
    to_minari(src, "aqua/rgba-v0", jpeg_encoding=False)
    ds = minari.load_dataset("aqua/rgba-v0")
    np.testing.assert_array_equal(ds[1].observations["img"], src[1].observations["img"])  # lossless


def test_ids_and_existing_datasets_are_checked(minari_root, tmp_path):
    src = cartpole(1, tmp_path=tmp_path)
    for bad in ("t/x-v0", "nover", "a b-v0"):
        with pytest.raises(ValueError, match="invalid Minari dataset id"):
            write_minari(src, tmp_path, bad)
    to_minari(src, "aqua/one-v0")
    with pytest.raises(FileExistsError):
        to_minari(src, "aqua/one-v0")
    to_minari(cartpole(2, tmp_path=tmp_path), "aqua/one-v0", overwrite=True)
    assert len(minari.load_dataset("aqua/one-v0")) == 2


def test_space_json_matches_minari_serializer(tmp_path):
    from gymnasium import spaces

    for space in [spaces.Box(-np.inf, np.inf, (2, 3)), spaces.Discrete(5, start=-2), spaces.MultiDiscrete([3, 4]),
                  spaces.MultiBinary([2, 3]), spaces.Text(8, min_length=2, charset="xyz"),
                  nested(1, tmp_path=tmp_path).observation_space, spaces.Tuple((spaces.Discrete(2), spaces.Box(0, 1, (1,))))]:
        assert json.loads(minari_space_json(space)) == json.loads(minari.serialization.serialize_space(space))
        assert minari.serialization.deserialize_space(minari_space_json(space)) == space


def test_unfinished_last_episode_is_exported_truncated(minari_root, tmp_path):
    """Minari needs every episode to end terminated or truncated: one cut off mid-way (neither flag on its
    last step, e.g. from a foreign source or a hand-built dataset) is exported ending truncated, not
    terminated, with every other value unchanged."""
    from gym_aquacollect.formats._common import MemoryDataset, MemoryEpisode

    src = cartpole(3, tmp_path=tmp_path)
    eps = list(src.iterate_episodes())
    last = eps[-1]
    k = len(last) // 2
    cut = MemoryEpisode(last.id, last.observations[: k + 1], last.actions[:k], last.rewards[:k],
                        np.zeros(k, bool), np.zeros(k, bool))
    ds_in = MemoryDataset([*eps[:-1], cut], src.observation_space, src.action_space, env_spec=src.env_spec)
    to_minari(ds_in, "aqua/cartpole/cut-v0")
    ds = minari.load_dataset("aqua/cartpole/cut-v0")
    assert len(ds) == 3 and ds.total_steps == sum(len(e) for e in eps[:-1]) + k
    got = ds[2]
    assert got.truncations.tolist() == [False] * (k - 1) + [True]
    assert not got.terminations.any()
    np.testing.assert_array_equal(got.observations, cut.observations)
    np.testing.assert_array_equal(got.rewards, cut.rewards)
    for i, ours in enumerate(eps[:-1]):  # finished episodes keep their own flags
        np.testing.assert_array_equal(ds[i].terminations, ours.terminations)
        np.testing.assert_array_equal(ds[i].truncations, ours.truncations)
