"""The export / validate / replay / plot subcommands, end to end on a recorded dataset."""

from __future__ import annotations

import h5py
import numpy as np
from _peers import require

from gym_aquacollect import load_dataset
from gym_aquacollect.cli import main
from tests._formats_util import cartpole


def _main(argv):
    return main(argv)  # the real `aquacollect` entry point (gym_aquacollect.cli:main)


def test_export_each_format(tmp_path, capsys, monkeypatch):
    require("PIL")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "mroot"))
    src = cartpole(3, tmp_path=tmp_path)
    assert _main(["export", str(src.path), "--format", "minari", "--dataset-id", "aqua/cli-v0"]) == 0
    assert "aqua/cli-v0" in capsys.readouterr().out
    assert load_dataset("aqua/cli-v0").total_steps == src.total_steps
    for fmt, name in (("d4rl", "x.hdf5"), ("robomimic", "demos.hdf5"), ("npz", "t.npz")):
        assert _main(["export", str(src.path), "--format", fmt, "--out", str(tmp_path / name)]) == 0
        back = load_dataset(tmp_path / name)
        assert back.total_steps == src.total_steps, fmt
        np.testing.assert_array_equal(back[2].actions, src[2].actions)
    assert _main(["export", str(src.path), "--format", "d4rl"]) == 2  # --out missing
    assert _main(["export", str(src.path), "--format", "d4rl", "--out", str(tmp_path / "x.hdf5")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert _main(["export", str(src.path), "--format", "d4rl", "--out", str(tmp_path / "x.hdf5"), "--overwrite"]) == 0


def test_validate_detects_corruption(tmp_path, capsys):
    src = cartpole(2, tmp_path=tmp_path)
    assert _main(["validate", str(src.path)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "checksums verified" in out
    shard = sorted((src.path / "shards").glob("*.h5"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert _main(["validate", str(src.path)]) == 1
    assert "checksum" in capsys.readouterr().out
    # a foreign file breaking its format's rules
    p = tmp_path / "bad.hdf5"
    with h5py.File(p, "w") as f:
        for k in ("observations", "actions"):
            f[k] = np.zeros((3, 2), np.float32)
        f["rewards"] = np.zeros(3, np.float32)
        f["terminals"] = np.array([0, 0, 1], bool)
        f["timeouts"] = np.array([0, 0, 1], bool)
    assert _main(["validate", str(p)]) == 1
    assert "both set" in capsys.readouterr().out


def test_replay_and_plot(tmp_path, capsys):
    require("matplotlib")
    src = cartpole(3, tmp_path=tmp_path)
    assert _main(["replay", str(src.path)]) == 0
    assert "deterministic" in capsys.readouterr().out
    assert _main(["replay", str(src.path), "--playback", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert f"episode 1: {len(src[1])} steps" in out
    png = tmp_path / "plots" / "returns.png"
    assert _main(["plot", str(src.path), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_help_lists_the_subcommands(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", "--help"], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.returncode == 0
    for cmd in ("record", "info", "export", "validate", "replay", "plot"):
        assert cmd in out.stdout
