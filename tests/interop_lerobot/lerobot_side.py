"""Runs inside the lerobot 0.4.4 virtual environment (.venv-lerobot), never in the main one.

    python lerobot_side.py read OUT EXPECTED.npz REPORT.json   # open our export with LeRobotDataset
    python lerobot_side.py write OUT FRAMES.npz                # write a dataset with lerobot's own API

``read`` loads ``LeRobotDataset("aqua/interop", root=OUT, video_backend="pyav")`` offline and writes what it
saw (episodes, frames, states, actions, max/mean pixel error per frame) to REPORT.json; the test asserts on it.
``write`` creates a small dataset with ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` /
``finalize`` and saves the frames it added to FRAMES.npz so our importer can be checked against them.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402


def read(out, expected, report):
    exp = np.load(expected)
    ds = LeRobotDataset("aqua/interop", root=out, video_backend="pyav")
    rep = {"num_episodes": ds.num_episodes, "num_frames": ds.num_frames, "fps": ds.fps,
           "features": sorted(ds.features), "camera_keys": list(ds.meta.camera_keys),
           "episodes": [], "state_max_abs_diff": 0.0, "action_max_abs_diff": 0.0, "frame_mean_err": [],
           "frame_max_err": [], "tasks": [], "reward_max_abs_diff": 0.0, "done_mismatch": 0}
    for i in range(len(ds)):
        item = ds[i]
        e, f = int(item["episode_index"]), int(item["frame_index"])
        k = int(np.flatnonzero((exp["episode_index"] == e) & (exp["frame_index"] == f))[0])
        rep["state_max_abs_diff"] = max(rep["state_max_abs_diff"],
                                        float(np.abs(item["observation.joints"].numpy() - exp["joints"][k]).max()))
        rep["action_max_abs_diff"] = max(rep["action_max_abs_diff"],
                                         float(np.abs(item["action"].numpy() - exp["action"][k]).max()))
        rep["reward_max_abs_diff"] = max(rep["reward_max_abs_diff"],
                                         float(abs(float(item["next.reward"]) - float(exp["reward"][k]))))
        rep["done_mismatch"] += int(bool(item["next.done"]) != bool(exp["done"][k]))
        img = item["observation.images.camera"].numpy()  # (C, H, W) float in [0, 1]
        img = np.round(img.transpose(1, 2, 0) * 255).astype(int)
        err = np.abs(img - exp["camera"][k].astype(int))
        rep["frame_mean_err"].append(float(err.mean()))
        rep["frame_max_err"].append(int(err.max()))
        rep["tasks"].append(item["task"])
        if f == 0:
            rep["episodes"].append(e)
    rep["episode_lengths"] = [int(ds.meta.episodes[i]["length"]) for i in range(ds.meta.total_episodes)]
    with open(report, "w") as fh:
        json.dump(rep, fh)


def write(out, frames_path):
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["a0", "a1"]},
        "observation.images.top": {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create("aqua/written-by-lerobot", fps=10, features=features, root=out, use_videos=True)
    rng = np.random.default_rng(0)
    saved = {"state": [], "action": [], "image": [], "episode": []}
    y, x = np.mgrid[0:48, 0:64]
    for e, n in enumerate((7, 5)):
        for t in range(n):
            img = np.stack([128 + 50 * np.sin((x + 3 * t) / 15), 128 + 50 * np.cos((y + t) / 12),
                            np.full(x.shape, 100 + 5 * t)], axis=-1).round().astype(np.uint8)
            state = rng.normal(size=3).astype(np.float32)
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            ds.add_frame({"observation.state": state, "action": action, "observation.images.top": img,
                          "task": f"task {e}"})
            for k, v in (("state", state), ("action", action), ("image", img), ("episode", e)):
                saved[k].append(v)
        ds.save_episode()
    ds.finalize()
    np.savez(frames_path, **{k: np.asarray(v) for k, v in saved.items()})


if __name__ == "__main__":
    {"read": read, "write": write}[sys.argv[1]](*sys.argv[2:])
