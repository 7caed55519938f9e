"""A dataset handed over by a stranger is safe to open (issue 9, items 12-16; issue 12, item 3).

Each test builds one hostile dataset the way an attacker would (recomputing the manifests' sizes and
CRC32s, so checksums do not give it away) and checks that opening, validating, exporting and replaying it
runs no code named by the dataset, reads nothing outside its directory, never hangs, and fails with a
``DatasetFormatError`` that names the offending file. A hypothesis fuzzer mutates JSON values and HDF5
index values and asserts that the result is either refused with ``DatasetFormatError`` or reads back as
self-consistent data. Examples: ``AQUACOLLECT_HOSTILE_EXAMPLES`` (default 60; 1,000 under
``AQUACOLLECT_SOAK=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_child import report_figures

from gym_aquacollect import CollectingWrapper, DatasetFormatError, FlushPolicy, load_dataset
from gym_aquacollect.storage.manifest import _read_json, atomic_write_json, file_checksum
from gym_aquacollect.storage.verify import verify_dataset
from gym_aquacollect.validate import validate_dataset

SOAK = os.environ.get("AQUACOLLECT_SOAK") == "1" or "--soak" in sys.argv
EXAMPLES = int(os.environ.get("AQUACOLLECT_HOSTILE_EXAMPLES", 1000 if SOAK else 60))
CLI = [sys.executable, "-m", "gym_aquacollect.cli"]


# -- building datasets -----------------------------------------------------------------------------------
def _record(path: Path, n_shards: int = 2, seed: int = 0) -> None:
    with CollectingWrapper(gym.make("CartPole-v1"), path, flush_policy=FlushPolicy(every_seconds=None),
                           compression=None) as env:
        rng = np.random.default_rng(seed)
        for _ in range(n_shards):
            for _ in range(3):
                env.reset(seed=int(rng.integers(1 << 30)))
                while True:
                    *_, term, trunc, _ = env.step(int(rng.integers(2)))
                    if term or trunc:
                        break
            env.flush()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "ds"
    _record(path)
    return path


@pytest.fixture
def ds_path(pristine: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ds"
    shutil.copytree(pristine, path, symlinks=True)
    return path


def _manifest(path: Path) -> Path:
    (m,) = sorted((path / "manifests").glob("*.json"))
    return m


def _shards(path: Path) -> list[str]:
    return [s["file"] for s in _read_json(_manifest(path))["shards"]]


def _reseal(path: Path) -> None:
    """What an attacker does after editing shards: store the new sizes and CRC32s in the manifests."""
    for m in (path / "manifests").glob("*.json"):
        d = _read_json(m)
        for s in d["shards"]:
            f = path / s["file"] if not os.path.isabs(s["file"]) else Path(s["file"])
            if f.is_file():
                s["size"], s["checksum"] = f.stat().st_size, file_checksum(f)
        atomic_write_json(m, d)


def _edit_manifest(path: Path, edit) -> None:
    m = _manifest(path)
    d = _read_json(m)
    edit(d)
    atomic_write_json(m, d)


def _edit_meta(path: Path, edit) -> None:
    d = _read_json(path / "aquacollect.json")
    edit(d)
    atomic_write_json(path / "aquacollect.json", d)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _refuses(path: Path, name: str) -> None:
    """load_dataset raises DatasetFormatError naming ``name``; verify/validate report it; export refuses."""
    with pytest.raises(DatasetFormatError) as e:
        ds = load_dataset(path)
        for ep in ds:  # only reached if opening did not refuse: reading must
            _ = ep.observations, ep.actions, ep.rewards, ep.infos, ep.extras, ep.metadata
    assert name in str(e.value), str(e.value)
    report = validate_dataset(path)
    assert not report.ok and any(name in p for p in report.problems), str(report)
    out = path.parent / "export.npz"
    r = _cli("export", str(path), "--format", "npz", "--out", str(out))
    assert r.returncode != 0 and name in r.stderr and not out.exists(), r.stdout + r.stderr


# -- item 12: no code named by a dataset ever runs ------------------------------------------------------
def _evil_spec(marker: Path, env_id: str = "CartPole-v1") -> dict:
    return {"id": env_id, "entry_point": "subprocess:getoutput", "reward_threshold": None,
            "nondeterministic": False, "max_episode_steps": None, "order_enforce": True,
            "disable_env_checker": True, "kwargs": {"cmd": f"touch {marker}"}, "additional_wrappers": [],
            "vector_entry_point": None}


def test_cli_replay_never_runs_the_entry_point_a_dataset_names(ds_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _edit_meta(ds_path, lambda d: d.__setitem__("env_spec", json.dumps(_evil_spec(marker))))
    r = _cli("replay", str(ds_path))
    assert not marker.exists(), "the dataset's entry point ran"
    assert r.returncode == 2 and "CartPole-v1" in r.stderr and "Traceback" not in r.stderr, r.stderr
    # an id that is not registered here: refused, and the message names the switch
    _edit_meta(ds_path, lambda d: d.__setitem__("env_spec", json.dumps(_evil_spec(marker, "Evil/Env-v0"))))
    r = _cli("replay", str(ds_path))
    assert not marker.exists()
    assert r.returncode == 2 and "--trust-env-spec" in r.stderr and "Evil/Env-v0" in r.stderr, r.stderr


def test_load_replay_and_recover_environment_never_run_the_dataset_entry_point(ds_path: Path, tmp_path: Path) -> None:
    from gym_aquacollect.data.env_spec import UntrustedEnvSpecError
    from gym_aquacollect.replay import ReplayEnv

    marker = tmp_path / "PWNED"
    spec = _evil_spec(marker, "Evil/Env-v0")
    _edit_meta(ds_path, lambda d: d.__setitem__("env_spec", json.dumps(spec)))
    ds = load_dataset(ds_path)
    assert isinstance(ds.env_spec, gym.envs.registration.EnvSpec)
    assert ds.env_spec.id == "Evil/Env-v0" and ds.env_spec.entry_point == "subprocess:getoutput"
    env = ReplayEnv(ds)
    env.reset()
    env.step(env.recorded_action)
    with pytest.raises(UntrustedEnvSpecError, match="trust_env_spec"):
        ds.recover_environment()
    assert not marker.exists()


def test_recover_environment_uses_the_local_registry_unless_trusted(ds_path: Path) -> None:
    # the recorded id is CartPole-v1 but the spec names Pendulum's class: untrusted -> the local CartPole
    def edit(d):
        spec = json.loads(d["env_spec"])
        spec["entry_point"] = "gymnasium.envs.classic_control.pendulum:PendulumEnv"
        spec["max_episode_steps"] = 17
        spec["kwargs"] = {"sutton_barto_reward": True}
        d["env_spec"] = json.dumps(spec)

    _edit_meta(ds_path, edit)
    ds = load_dataset(ds_path)
    env = ds.recover_environment()
    assert type(env.unwrapped).__name__ == "CartPoleEnv" and env.spec.max_episode_steps == 17
    assert env.unwrapped._sutton_barto_reward is True  # the dataset's kwargs are used
    env.close()
    with pytest.raises(TypeError):  # trusted: the recorded entry point (Pendulum) with CartPole's kwargs
        ds.recover_environment(trust_env_spec=True)
    _edit_meta(ds_path, lambda d: d.__setitem__("env_spec", d["env_spec"].replace(
        '"kwargs": {"sutton_barto_reward": true}', '"kwargs": {}')))
    env = load_dataset(ds_path).recover_environment(trust_env_spec=True)
    assert type(env.unwrapped).__name__ == "PendulumEnv"
    env.close()


def test_recover_environment_refuses_wrappers_from_outside_gymnasium(ds_path: Path, tmp_path: Path) -> None:
    from gym_aquacollect.data.env_spec import UntrustedEnvSpecError

    def edit(d, entry):
        spec = json.loads(d["env_spec"])
        spec["additional_wrappers"] = [{"name": "W", "entry_point": entry, "kwargs": {}}]
        d["env_spec"] = json.dumps(spec)

    _edit_meta(ds_path, lambda d: edit(d, "os:system"))
    with pytest.raises(UntrustedEnvSpecError, match="os:system"):
        load_dataset(ds_path).recover_environment()
    _edit_meta(ds_path, lambda d: edit(d, "gymnasium.wrappers:FlattenObservation"))
    env = load_dataset(ds_path).recover_environment()
    assert type(env).__name__ == "FlattenObservation"
    env.close()


def test_minari_reader_builds_spaces_from_the_local_registry(tmp_path: Path) -> None:
    """A Minari dataset without stored spaces: its spaces come from the env its spec names, rebuilt locally."""
    marker = tmp_path / "PWNED"
    d = tmp_path / "evil-minari" / "data"
    d.mkdir(parents=True)
    spec = _evil_spec(marker)
    (d / "metadata.json").write_text(json.dumps({
        "dataset_id": "evil/cartpole-v0", "minari_version": "0.5.3", "data_format": "hdf5", "total_episodes": 1,
        "total_steps": 2, "env_spec": json.dumps(spec)}))
    with h5py.File(d / "main_data.hdf5", "w") as f:
        g = f.create_group("episode_0")
        g.attrs["total_steps"] = 2
        g["observations"] = np.zeros((3, 4), np.float32)
        g["actions"] = np.zeros(2, np.int64)
        g["rewards"] = np.ones(2)
        g["terminations"] = np.array([False, True])
        g["truncations"] = np.zeros(2, bool)
    with pytest.raises(DatasetFormatError, match="metadata.json"):  # CartPole takes no "cmd"
        load_dataset(d.parent)
    assert not marker.exists(), "the dataset's entry point ran"
    meta = json.loads((d / "metadata.json").read_text())
    meta["env_spec"] = json.dumps({**spec, "kwargs": {}})
    (d / "metadata.json").write_text(json.dumps(meta))
    ds = load_dataset(d.parent)
    assert ds.observation_space.shape == (4,) and ds.env_spec.id == "CartPole-v1"


def test_cli_info_shows_the_env_for_every_format(ds_path: Path, tmp_path: Path, monkeypatch) -> None:
    ds = load_dataset(ds_path)
    outs = {"dir": ds_path}
    from gym_aquacollect.formats import export

    outs["d4rl"] = export(ds, tmp_path / "cartpole.hdf5", "d4rl")
    outs["robomimic"] = export(ds, tmp_path / "demo.hdf5", "robomimic")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "mroot"))
    export(ds, None, "minari", dataset_id="aqua/cartpole-info-v0")
    outs["minari id"] = "aqua/cartpole-info-v0"
    for kind, target in outs.items():
        r = subprocess.run([*CLI, "info", str(target)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert r.returncode == 0, (kind, r.stderr)
        env_line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("env ")]
        assert env_line and env_line[0].split()[-1] == "CartPole-v1", (kind, r.stdout)
        r = subprocess.run([*CLI, "info", str(target), "--json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert json.loads(r.stdout)["env_spec"]["id"] == "CartPole-v1", (kind, r.stdout)


# -- item 13: nothing outside the directory is read ----------------------------------------------------
def _secret(tmp_path: Path, n: int) -> Path:
    s = tmp_path / "secret.bin"
    np.full(n, 4242.0, np.float64).tofile(s)
    return s


def _replace_rewards(path: Path, tmp_path: Path, how: str) -> str:
    rel = _shards(path)[0]
    with h5py.File(path / rel, "r+") as f:
        n = f["step/rewards"].shape[0]
        dtype = f["step/rewards"].dtype
        del f["step/rewards"]
        if how == "external raw storage":
            secret = _secret(tmp_path, n)
            f.create_dataset("step/rewards", shape=(n,), dtype=np.float64, external=[(str(secret), 0, n * 8)])
        elif how == "virtual dataset":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as g:
                g["data"] = np.full(n, 4242.0, dtype)
            layout = h5py.VirtualLayout(shape=(n,), dtype=dtype)
            layout[:] = h5py.VirtualSource(str(other), "data", shape=(n,))
            f.create_virtual_dataset("step/rewards", layout)
        elif how == "external link":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as g:
                g["data"] = np.full(n, 4242.0, dtype)
            f["step/rewards"] = h5py.ExternalLink(str(other), "/data")
        elif how == "soft link":
            f["step/rewards"] = h5py.SoftLink("/step/truncations")
    _reseal(path)
    return rel


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["external raw storage", "virtual dataset", "external link", "soft link"])
def test_shards_reading_other_files_are_refused(ds_path: Path, tmp_path: Path, how: str) -> None:
    rel = _replace_rewards(ds_path, tmp_path, how)
    _refuses(ds_path, rel.split("/")[-1])
    report = verify_dataset(ds_path)
    assert [(p.file, p.kind) for p in report.problems] == [(rel, "unsafe")], report.summary()


def _outside_copy(path: Path, tmp_path: Path) -> tuple[str, Path]:
    rel = _shards(path)[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / Path(rel).name
    shutil.copy(path / rel, target)
    return rel, target


@pytest.mark.timeout(120)
@pytest.mark.parametrize("entry", ["absolute", "dotdot", "symlink"])
def test_manifest_entries_leaving_the_shard_folder_are_refused(ds_path: Path, tmp_path: Path, entry: str) -> None:
    rel, target = _outside_copy(ds_path, tmp_path)
    os.unlink(ds_path / rel)
    if entry == "absolute":
        new = str(target)
    elif entry == "dotdot":
        new = os.path.relpath(target, ds_path)
        assert new.startswith("..")
    else:
        os.symlink(target, ds_path / rel)
        new = rel
    _edit_manifest(ds_path, lambda d: d["shards"][0].__setitem__("file", new))
    _refuses(ds_path, str(new).split("/")[-1])
    assert [p.kind for p in verify_dataset(ds_path).problems] == ["unsafe"]


def test_symlink_inside_the_shard_folder_is_fine(ds_path: Path) -> None:
    rel = _shards(ds_path)[0]
    n = len(load_dataset(ds_path))
    os.rename(ds_path / rel, ds_path / "shards" / "moved.h5")
    os.symlink("moved.h5", ds_path / rel)
    assert len(load_dataset(ds_path)) == n and verify_dataset(ds_path).ok


# -- item 14: nothing hangs -----------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_fifo_manifest_does_not_hang(ds_path: Path) -> None:
    os.mkfifo(ds_path / "manifests" / "x.json")
    with pytest.raises(DatasetFormatError, match=r"x\.json.*FIFO"):
        load_dataset(ds_path)
    report = validate_dataset(ds_path)
    assert not report.ok and any("x.json" in p for p in report.problems)
    assert [p.file for p in verify_dataset(ds_path).problems] == ["manifests/x.json"]
    assert len(load_dataset(ds_path, skip_corrupt=True)) == 6  # the real manifest's episodes


@pytest.mark.timeout(60)
def test_fifo_metadata_does_not_hang(ds_path: Path) -> None:
    os.unlink(ds_path / "aquacollect.json")
    os.mkfifo(ds_path / "aquacollect.json")
    with pytest.raises((DatasetFormatError, FileNotFoundError), match="aquacollect.json"):
        load_dataset(ds_path)
    assert [p.file for p in verify_dataset(ds_path).problems] == ["aquacollect.json"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("entry", ["/dev/zero", "fifo", "symlink to /dev/zero"])
def test_device_and_fifo_shards_do_not_hang(ds_path: Path, entry: str) -> None:
    rel = _shards(ds_path)[0]
    os.unlink(ds_path / rel)
    if entry == "/dev/zero":
        new = "/dev/zero"
    elif entry == "fifo":
        os.mkfifo(ds_path / rel)
        new = rel
    else:
        os.symlink("/dev/zero", ds_path / rel)
        new = rel
    _edit_manifest(ds_path, lambda d: d["shards"][0].__setitem__("file", new))
    _refuses(ds_path, new.split("/")[-1])
    report = verify_dataset(ds_path)
    assert report.problems and report.problems[0].kind == "unsafe", report.summary()
    assert len(load_dataset(ds_path, skip_corrupt=True)) == 3  # the other shard's episodes


# -- item 15: lying files are caught --------------------------------------------------------------------
@pytest.mark.parametrize("col,value", [(2, 10**6), (1, -1), (4, 10**6), (3, 2**62), (2, 2**63 - 1), (2, 1)])
def test_segments_outside_the_columns_are_caught_at_open(ds_path: Path, col: int, value: int) -> None:
    rel = _shards(ds_path)[0]
    with h5py.File(ds_path / rel, "r+") as f:
        f["index/segments"][0, col] = value
    _reseal(ds_path)
    with pytest.raises(DatasetFormatError, match=Path(rel).name):
        load_dataset(ds_path)
    if value != 1:  # out of bounds: the shard itself is refused by verify_dataset too
        report = verify_dataset(ds_path)
        assert report.bad_files == [rel] and report.problems[0].kind == "unreadable", report.summary()
        assert "segment" in report.problems[0].message


def test_manifest_copied_under_another_name_does_not_double_episodes(ds_path: Path) -> None:
    n = len(load_dataset(ds_path))
    shutil.copy(_manifest(ds_path), ds_path / "manifests" / "zz-copy.json")
    with pytest.raises(DatasetFormatError, match="zz-copy.json"):
        load_dataset(ds_path)
    assert len(load_dataset(ds_path, skip_corrupt=True)) == n
    assert verify_dataset(ds_path).bad_files == ["manifests/zz-copy.json"]
    assert not validate_dataset(ds_path).ok


def test_manifest_renamed_to_another_writer_does_not_double_episodes(ds_path: Path) -> None:
    n = len(load_dataset(ds_path))
    d = _read_json(_manifest(ds_path))
    d["writer_id"] = "w9999999999999999999-evil"
    atomic_write_json(ds_path / "manifests" / f"{d['writer_id']}.json", d)
    with pytest.raises(DatasetFormatError, match="w9999999999999999999-evil.json"):
        load_dataset(ds_path)
    assert len(load_dataset(ds_path, skip_corrupt=True)) == n
    assert {p.kind for p in verify_dataset(ds_path).problems} == {"duplicate"}


def test_shard_listed_twice_does_not_double_episodes(ds_path: Path) -> None:
    _edit_manifest(ds_path, lambda d: d["shards"].append(dict(d["shards"][0])))
    with pytest.raises(DatasetFormatError, match="twice"):
        load_dataset(ds_path)
    assert [p.kind for p in verify_dataset(ds_path).problems] == ["duplicate"]


_DEEP = "[" * 100_000 + "]" * 100_000
_MANIFEST_LIES = {
    "a list": lambda d: [d],
    "writer_id a number": lambda d: {**d, "writer_id": 5},
    "shards a dict": lambda d: {**d, "shards": {"a": 1}},
    "shard entry a string": lambda d: {**d, "shards": ["shards/x.h5"]},
    "shard entry lacks fields": lambda d: {**d, "shards": [{"file": d["shards"][0]["file"]}]},
    "shard entry has unknown fields": lambda d: {**d, "shards": [{**d["shards"][0], "evil": 1}]},
    "row count a string": lambda d: {**d, "shards": [{**d["shards"][0], "n_obs_rows": "many"}]},
    "size infinite": lambda d: {**d, "shards": [{**d["shards"][0], "size": float("inf")}]},
    "size negative": lambda d: {**d, "shards": [{**d["shards"][0], "size": -1}]},
    "file a number": lambda d: {**d, "shards": [{**d["shards"][0], "file": 7}]},
    "info a list": lambda d: {**d, "info": []},
    "closed a string": lambda d: {**d, "closed": "yes"},
}
_META_LIES = {
    "format_version infinite": lambda d: {**d, "format_version": float("inf")},
    "format_version a string": lambda d: {**d, "format_version": "one"},
    "observation_space missing": lambda d: {k: v for k, v in d.items() if k != "observation_space"},
    "action_space a string": lambda d: {**d, "action_space": "Discrete(2)"},
    "Box shape absurd": lambda d: {**d, "observation_space": {**d["observation_space"], "shape": [10**6] * 3}},
    "Box shape negative": lambda d: {**d, "observation_space": {**d["observation_space"], "shape": [-4]}},
    "Box shape huge int": lambda d: {**d, "observation_space": {**d["observation_space"], "shape": [10**30]}},
    "Discrete n huge": lambda d: {**d, "action_space": {**d["action_space"], "n": 10**30}},
    "Dict nested deeply": lambda d: {**d, "observation_space": _nested_dict(5000)},
    "env_spec a number": lambda d: {**d, "env_spec": 3},
    "a list": lambda d: [d],
}


def _nested_dict(depth: int) -> dict:
    node: dict = {"type": "Discrete", "n": 2}
    for _ in range(depth):
        node = {"type": "Dict", "subspaces": {"a": node}}
    return node


def _write_raw(path: Path, obj) -> None:
    """Write JSON with a valid self-checksum when it has one (the attacker's best effort)."""
    if isinstance(obj, dict):
        try:
            atomic_write_json(path, obj)
            return
        except (ValueError, RecursionError):
            pass
    try:
        text = json.dumps(obj)
    except RecursionError:  # write deep nesting by hand
        text = '{"nested": ' + "[" * 5000 + "]" * 5000 + "}"
    path.write_text(text)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lie", [*_MANIFEST_LIES, "nested 100k deep"])
def test_malformed_manifest_raises_format_error_naming_it(ds_path: Path, lie: str) -> None:
    m = _manifest(ds_path)
    if lie == "nested 100k deep":
        m.write_text(_DEEP)
    else:
        _write_raw(m, _MANIFEST_LIES[lie](_read_json(m)))
    with pytest.raises(DatasetFormatError, match=m.name):
        load_dataset(ds_path)
    assert verify_dataset(ds_path).bad_files == [f"manifests/{m.name}"]
    assert not validate_dataset(ds_path).ok


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lie", [*_META_LIES, "nested 100k deep"])
def test_malformed_metadata_raises_format_error_naming_it(ds_path: Path, lie: str) -> None:
    meta = ds_path / "aquacollect.json"
    if lie == "nested 100k deep":
        meta.write_text(_DEEP)
    else:
        _write_raw(meta, _META_LIES[lie](_read_json(meta)))
    with pytest.raises(DatasetFormatError, match="aquacollect.json"):
        load_dataset(ds_path)
    assert not validate_dataset(ds_path).ok


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["a column row", "a column length", "the segment table"])
def test_absurd_shapes_refused_before_allocation(ds_path: Path, where: str) -> None:
    rel = _shards(ds_path)[0]
    with h5py.File(ds_path / rel, "r+") as f:
        n = f["step/rewards"].shape[0]
        if where == "a column row":  # 8 TiB per row, nothing stored
            f.create_dataset("step/extras/huge", shape=(n, 1 << 20, 1 << 20), dtype=np.float64, chunks=(1, 1, 1024))
        elif where == "a column length":
            f.create_dataset("obs/infos/huge", shape=(1 << 40, 64), maxshape=(None, 64), dtype=np.float64,
                             chunks=(1024, 64))
        else:
            del f["index/segments"]
            f.create_dataset("index/segments", shape=(1 << 40, 5), dtype=np.int64, chunks=(1024, 5))
    _reseal(ds_path)
    with pytest.raises(DatasetFormatError, match=Path(rel).name):
        ds = load_dataset(ds_path)
        for ep in ds:
            _ = ep.extras, ep.infos
    report = verify_dataset(ds_path)
    assert report.bad_files == [rel], report.summary()


# -- item 16: fuzzing JSON and HDF5 index values ---------------------------------------------------------
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "../x", "/dev/zero", "shards/", "crc32:00000000", "Box", "float32", "CartPole-v1",
                       "subprocess:getoutput"]) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)
_INDEX = ("segments", "episode_key", "episode_length", "episode_return", "episode_flags", "episode_time")
_edges = st.sampled_from([0, 1, -1, 2, 3, 1 << 31, -(1 << 31), (1 << 62), -(1 << 63), (1 << 63) - 1])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _mutate_json(obj, data: st.DataObject):
    paths = [p for p in _paths(obj) if p]
    path = data.draw(st.sampled_from(paths), label="json path")
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    op = data.draw(st.sampled_from(["replace", "delete", "add"]), label="json op")
    if op == "delete":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6), label="key")] = data.draw(_json_values, label="value")
    else:
        parent[path[-1]] = data.draw(_json_values, label="value")
    return obj


def _self_consistent(path: Path) -> int:
    """Read everything; every episode must be internally consistent. Returns the number of episodes."""
    ds = load_dataset(path)
    total = 0
    for ep in ds:
        T = len(ep)
        assert T >= 0
        obs, act = np.asarray(ep.observations), np.asarray(ep.actions)
        assert obs.shape[0] == T + 1 and act.shape[0] == T
        assert len(ep.rewards) == T and len(ep.terminations) == T and len(ep.truncations) == T
        assert isinstance(ep.metadata, dict)
        for v in ep.infos.values():
            assert not hasattr(v, "__len__") or isinstance(v, dict) or len(v) == T + 1
        total += T
    assert total == ds.total_steps
    ds.statistics()
    return len(ds)


_FUZZ = {"examples": 0, "refused": 0, "consistent": 0}


@pytest.mark.timeout(0 if SOAK else 900)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzzed_datasets_are_refused_or_consistent(pristine: Path, tmp_path_factory: pytest.TempPathFactory,
                                                   data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "ds"
    shutil.copytree(pristine, path)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        target = data.draw(st.sampled_from(["metadata", "manifest", "index", "attrs"]), label="target")
        if target in ("metadata", "manifest"):
            f = path / "aquacollect.json" if target == "metadata" else _manifest(path)
            try:
                obj = _read_json(f)
            except (DatasetFormatError, FileNotFoundError):
                continue
            obj = _mutate_json(obj, data)
            if data.draw(st.booleans(), label="keep checksum valid"):
                _write_raw(f, obj)
            else:
                f.write_text(json.dumps(obj))
        else:
            try:
                rel = data.draw(st.sampled_from(_shards(path)), label="shard")
            except (DatasetFormatError, KeyError, TypeError, ValueError, AttributeError):
                continue
            if not isinstance(rel, str) or not (path / rel).is_file() or ".." in rel or rel.startswith("/"):
                continue
            with h5py.File(path / rel, "r+") as h:
                if target == "index":
                    ds = h["index/" + data.draw(st.sampled_from(_INDEX), label="table")]
                    if ds.size == 0:
                        continue
                    flat = data.draw(st.integers(0, ds.size - 1), label="element")
                    idx = np.unravel_index(flat, ds.shape)
                    value = data.draw(_edges | st.integers(-50, 500), label="index value")
                    info = np.iinfo(ds.dtype) if ds.dtype.kind in "iu" else None
                    if info is not None:
                        value = int(np.clip(value, info.min, info.max))
                    ds[idx] = value
                else:
                    key = data.draw(st.sampled_from(["n_obs_rows", "n_step_rows"]), label="attr")
                    h.attrs[key] = data.draw(_edges | st.integers(0, 500), label="attr value")
            if data.draw(st.booleans(), label="reseal"):
                try:
                    _reseal(path)
                except (DatasetFormatError, KeyError, TypeError, ValueError, AttributeError, OSError):
                    pass
    _FUZZ["examples"] += 1
    try:
        _self_consistent(path)
        _FUZZ["consistent"] += 1
    except DatasetFormatError:
        _FUZZ["refused"] += 1
    report = verify_dataset(path)  # never raises, never hangs
    assert isinstance(report.ok, bool)
    shutil.rmtree(path.parent, ignore_errors=True)


def test_zz_report_fuzz_figures() -> None:
    if _FUZZ["examples"]:
        report_figures("hostile_fuzz", dict(_FUZZ))
