"""The gym_aquacollect.backends entry-point group: a third-party backend found through package metadata."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gym_aquacollect.formats import backends, export, register_backend

ROOT = Path(__file__).parents[1]


def test_builtin_backends_registered():
    names = set(backends())
    assert {"minari", "d4rl", "robomimic", "npz", "pickle", "hdf5"} <= names
    with pytest.raises(ValueError, match="unknown export format 'nope'"):
        export(object(), "x", "nope")
    with pytest.raises(TypeError, match="neither export"):
        register_backend(type("B", (), {"name": "b"})())


def test_entry_point_plugin_in_a_fresh_interpreter(tmp_path):
    # an installed distribution is a *.dist-info directory on sys.path: declare the example's backend there
    dist = tmp_path / "site" / "aqua_csv-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aqua-csv\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gym_aquacollect.backends]\ncsv = custom_backend:CsvBackend\n")
    code = (
        "import gymnasium as gym\n"
        "from gym_aquacollect import CollectingWrapper, load_dataset\n"
        "from gym_aquacollect.formats import backends, export\n"
        "assert 'csv' in backends(), sorted(backends())\n"
        f"with CollectingWrapper(gym.make('CartPole-v1'), {str(tmp_path / 'd')!r}) as env:\n"
        "    env.reset(seed=0)\n"
        "    for _ in range(60):\n"
        "        *_, te, tr, _ = env.step(env.action_space.sample())\n"
        "        if te or tr: env.reset()\n"
        f"ds = load_dataset({str(tmp_path / 'd')!r})\n"
        f"p = export(ds, {str(tmp_path / 's.csv')!r}, 'csv')\n"
        "back = load_dataset(p)\n"
        "print(type(back).__name__, back.total_steps, ds.total_steps)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "examples"), str(tmp_path / "site")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    kind, a, b = out.stdout.split()
    assert kind == "MemoryDataset" and a == b == "60"
