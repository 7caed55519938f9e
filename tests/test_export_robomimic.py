"""robomimic / Isaac Lab demo export, read back with Isaac Lab's HDF5DatasetFileHandler and robomimic."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import gymnasium as gym
import h5py
import numpy as np
import pytest
from _peers import missing, require
from gymnasium import spaces

from gym_aquacollect.formats import ExportError, export_for_teacher_student
from gym_aquacollect.formats._common import MemoryDataset, nested_equal
from gym_aquacollect.formats.robomimic import read_robomimic, write_robomimic
from tests._formats_util import cartpole, nested, record_real


class _SuccessInfo(gym.Wrapper):
    """Pendulum with ``info["is_success"]`` on every step: True in even-numbered episodes."""

    def __init__(self, env):
        super().__init__(env)
        self.n = -1

    def reset(self, **kw):
        self.n += 1
        return self.env.reset(**kw)

    def step(self, action):
        obs, r, te, tr, info = self.env.step(action)
        return obs, r, te, tr, {**info, "is_success": self.n % 2 == 0}


def _arm_dataset(tmp_path, n=4, teacher=False):
    """Pendulum recorded with CollectingWrapper; even episodes succeed; optionally a teacher policy."""
    env = _SuccessInfo(gym.make("Pendulum-v1", max_episode_steps=7))
    t = (lambda obs: np.clip(-obs[2:3] * 0.5, -2, 2).astype(np.float32)) if teacher else None
    return record_real(env, tmp_path / f"arm{n}{teacher}", n, seed=3, teacher=t)


def _stub_torchvision():
    tv, tr = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    trf, md = types.ModuleType("torchvision.transforms.functional"), types.ModuleType("torchvision.models")
    tr.Lambda = tr.Compose = object
    tr.functional = trf
    tv.transforms = tr
    tv.models = md
    for m in (tv, tr, trf, md):  # a spec, so importlib.util.find_spec (torchrl does) works on the stub later
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr,
                        "torchvision.transforms.functional": trf, "torchvision.models": md})


def _robomimic():
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken CPU torchvision fails at import with RuntimeError
        sys.modules.pop("torchvision", None)
        _stub_torchvision()
    try:
        import robomimic.utils.file_utils as FileUtils
        import robomimic.utils.obs_utils as ObsUtils
        from robomimic.utils.dataset import SequenceDataset
    except Exception as e:  # noqa: BLE001
        missing(f"robomimic does not import here: {e}")
    return FileUtils, ObsUtils, SequenceDataset


def test_layout_and_isaaclab_handler(tmp_path):
    torch = require("torch")
    try:
        from isaaclab.utils.datasets import HDF5DatasetFileHandler
    except Exception as e:  # noqa: BLE001
        missing(f"isaaclab's dataset handler does not import: {e}")
    src = _arm_dataset(tmp_path, 12)
    path = export_for_teacher_student(src, tmp_path)
    h = HDF5DatasetFileHandler()
    h.open(str(path))
    names = sorted(h.get_episode_names(), key=lambda n: int(n[5:]))
    assert names == [f"demo_{i}" for i in range(12)]
    for i, ours in enumerate(src.iterate_episodes()):
        ep = h.load_episode(f"demo_{i}", device="cpu")
        torch.testing.assert_close(ep.data["actions"], torch.as_tensor(ours.actions.reshape(len(ours), -1)))
        torch.testing.assert_close(ep.data["obs"]["observation"], torch.as_tensor(ours.observations[:-1]))
        torch.testing.assert_close(ep.data["next_obs"]["observation"], torch.as_tensor(ours.observations[1:]))
        assert bool(ep.success) is (i % 2 == 0)
    h.close()
    with h5py.File(path) as f:
        assert f.attrs["format_version"] == 1
        assert f["data"].attrs["total"] == src.total_steps
        assert f["data/demo_3"].attrs["num_samples"] == len(src[3])
        assert f["data/demo_0/actions"].ndim == 2
        train = [x.decode() for x in f["mask/train"][:]]
        valid = [x.decode() for x in f["mask/valid"][:]]
        assert sorted(train + valid, key=lambda n: int(n[5:])) == names and len(valid) == 1


def test_layout_matches_isaaclab_writer(tmp_path):
    torch = require("torch")
    try:
        from isaaclab.utils.datasets import EpisodeData, HDF5DatasetFileHandler
    except Exception as e:  # noqa: BLE001
        missing(f"isaaclab's dataset handler does not import: {e}")
    src = _arm_dataset(tmp_path, 1)
    ours = write_robomimic(src, tmp_path / "ours.hdf5")
    ref = HDF5DatasetFileHandler()
    ref.create(str(tmp_path / "ref.hdf5"), env_name="Pendulum-v1")
    e = EpisodeData()
    ep = src[0]
    for t in range(len(ep)):  # the recorder adds one row per step and stacks at export
        e.add("actions", torch.as_tensor(ep.actions[t]))
        e.add("obs/observation", torch.as_tensor(ep.observations[t]))
    e.success = True
    e.pre_export()
    ref.write_episode(e)
    ref.flush()
    ref.close()
    with h5py.File(ours) as a, h5py.File(tmp_path / "ref.hdf5") as b:
        assert set(b.attrs) <= set(a.attrs) and a.attrs["format_version"] == b.attrs["format_version"]
        assert set(b["data"].attrs) <= set(a["data"].attrs)
        assert set(b["data/demo_0"].attrs) <= set(a["data/demo_0"].attrs)
        for k in ("actions", "obs/observation"):
            assert a["data/demo_0"][k].dtype == b["data/demo_0"][k].dtype, k
            assert a["data/demo_0"][k].shape == b["data/demo_0"][k].shape, k
        assert a["data"].attrs["total"] == b["data"].attrs["total"]


def test_robomimic_sequence_dataset(tmp_path):
    FileUtils, ObsUtils, SequenceDataset = _robomimic()
    src = _arm_dataset(tmp_path, 10)
    path = write_robomimic(src, tmp_path / "demos.hdf5", valid_fraction=0.2)
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["observation"], "rgb": []}})
    meta = FileUtils.get_env_metadata_from_dataset(str(path))
    assert meta["env_name"] == "Pendulum-v1" and meta["type"] == 2 and "max_episode_steps" not in meta["env_kwargs"]
    shape = FileUtils.get_shape_metadata_from_dataset(str(path), all_obs_keys=["observation"])
    assert shape["ac_dim"] == 1 and list(shape["all_shapes"]["observation"]) == [3]
    with h5py.File(path) as f:
        train = sorted((x.decode() for x in f["mask/train"][:]), key=lambda n: int(n[5:]))
    ds = SequenceDataset(hdf5_path=str(path), obs_keys=("observation",), dataset_keys=("actions", "rewards", "dones"),
                         seq_length=1, hdf5_cache_mode="all", filter_by_attribute="train")
    assert ds.demos == train and len(ds) == sum(len(src[int(n[5:])]) for n in train)
    item = ds[0]
    first = src[int(train[0][5:])]
    np.testing.assert_allclose(item["obs"]["observation"][0], first.observations[0])
    np.testing.assert_allclose(item["next_obs"]["observation"][0], first.observations[1])
    np.testing.assert_allclose(item["actions"][0], first.actions[0])
    # dones = terminated or truncated: these Pendulum demos end on the time limit, read through robomimic
    assert first.truncations[-1] and not first.terminations.any()
    assert [int(ds[t]["dones"][0]) for t in range(len(first))] == [0] * (len(first) - 1) + [1]


def test_only_successful_and_teacher_actions_roundtrip(tmp_path):
    src = _arm_dataset(tmp_path, 5, teacher=True)
    path = export_for_teacher_student(src, tmp_path, only_successful=True, actions="teacher")
    with h5py.File(path) as f:
        assert len(f["data"]) == 3  # episodes 0, 2, 4
        np.testing.assert_array_equal(f["data/demo_1/actions"][:], src[2].extras["teacher_actions"].reshape(-1, 1))
        np.testing.assert_array_equal(f["data/demo_1/executed_actions"][:], src[2].actions)
    back = read_robomimic(path)
    assert [e.metadata["source_episode_id"] for e in back.iterate_episodes()] == [0, 2, 4]
    for a, b in zip(back.iterate_episodes(), [src[0], src[2], src[4]]):
        np.testing.assert_array_equal(a.actions, b.actions)  # executed actions come back as actions
        np.testing.assert_array_equal(a.extras["teacher_actions"], b.extras["teacher_actions"])
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert a.metadata["success"] is True
    with pytest.raises(ExportError, match="teacher_actions"):
        write_robomimic(cartpole(1, tmp_path=tmp_path), tmp_path / "x.hdf5", actions="teacher")
    with pytest.raises(ExportError, match="no successful"):
        write_robomimic(cartpole(1, tmp_path=tmp_path), tmp_path / "y.hdf5", only_successful=True)
    assert not (tmp_path / "y.hdf5").exists()


def test_nested_obs_and_discrete_actions_roundtrip(tmp_path):
    src = nested(3, tmp_path=tmp_path)
    path = write_robomimic(src, tmp_path / "n.hdf5")
    with h5py.File(path) as f:
        assert set(f["data/demo_0/obs"].keys()) == {"pos", "t", "img"}
        assert f["data/demo_0/obs/img"].dtype == np.uint8  # images raw, channel-last
        assert f["data/demo_0/actions"].shape == (len(src[0]), 4)  # Dict actions flattened
    back = read_robomimic(path)
    for a, b in zip(back.iterate_episodes(), src.iterate_episodes()):
        assert nested_equal(a.observations, b.observations) and nested_equal(a.actions, b.actions)
    cp = cartpole(2, tmp_path=tmp_path)
    p2 = write_robomimic(cp, tmp_path / "cp.hdf5")
    with h5py.File(p2) as f:
        assert f["data/demo_0/actions"].shape == (len(cp[0]), 1)
    np.testing.assert_array_equal(read_robomimic(p2)[1].actions, cp[1].actions)


def test_foreign_isaaclab_file_imports(tmp_path):
    torch = require("torch")
    try:
        from isaaclab.utils.datasets import EpisodeData, HDF5DatasetFileHandler
    except Exception as e:  # noqa: BLE001
        missing(f"isaaclab's dataset handler does not import: {e}")
    h = HDF5DatasetFileHandler()
    h.create(str(tmp_path / "isaac.hdf5"), env_name="Isaac-Fake-v0")
    rng = np.random.default_rng(0)
    acts, jp = [], []
    for k in range(2):
        e = EpisodeData()
        a = torch.as_tensor(rng.normal(size=(5, 2)).astype(np.float32))
        o = torch.as_tensor(rng.normal(size=(5, 3)).astype(np.float32))
        for t in range(5):
            e.add("actions", a[t])
            e.add("obs/joint_pos", o[t])
        e.success = k == 0
        e.pre_export()
        h.write_episode(e)
        acts.append(a.numpy())
        jp.append(o.numpy())
    h.flush()
    h.close()
    ds = read_robomimic(tmp_path / "isaac.hdf5")
    assert isinstance(ds, MemoryDataset) and len(ds) == 2
    assert ds.observation_space == spaces.Dict({"joint_pos": spaces.Box(-np.inf, np.inf, (3,), np.float32)})
    np.testing.assert_array_equal(ds[0].observations["joint_pos"], jp[0])  # no next_obs: 5 obs, 4 steps
    np.testing.assert_array_equal(ds[0].actions, acts[0][:4])
    assert ds[0].terminations[-1] and ds[1].truncations[-1]
