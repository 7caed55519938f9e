"""The README's Python examples run as written (in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _peers import require, require_loopback

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    # self-contained examples only; the Ray block runs scaled down in test_readme_ray_example_runs
    return [b for b in blocks if "import" in b and "collect_distributed" not in b]


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _python_blocks()[index]
    namespace: dict = {}
    exec(compile(code, f"README.md block {index}", "exec"), namespace)
    if "load_dataset" in code and "ds" in namespace:
        ds = namespace["ds"]
        # the env steps the example takes: a step loop (times the sub-envs of a vector env), an SB3
        # learn(total_timesteps), or an RSL-RL runner's num_steps_per_env x iterations (times the sub-envs)
        env = next((namespace[k] for k in ("envs", "env", "venv") if k in namespace), None)
        width = int(getattr(env, "num_envs", 1) or 1)
        loop = re.search(r"for \w+ in range\(([\d_]+)\):", code)
        learn = re.search(r"\.learn\(([\d_]+)\)", code)
        rsl = re.search(r'"num_steps_per_env": (\d+).*learn\(num_learning_iterations=(\d+)\)', code, flags=re.S)
        expected = (int(learn.group(1)) if learn else int(rsl.group(1)) * int(rsl.group(2)) * width if rsl
                    else int(loop.group(1)) * width if loop else None)
        assert expected is not None, "a README example that loads a dataset records a known number of steps"
        if loop and width > 1 and not (learn or rsl):
            # a Gymnasium vector env autoresets NEXT_STEP: the step after an episode's end is a reset, no transition
            assert expected - len(ds) <= ds.total_steps <= expected
        else:
            assert ds.total_steps == expected  # every step recorded (the open episodes stored at close)
        assert sum(len(ep) for ep in ds) == ds.total_steps and len(ds) >= 1
    if "collector" in namespace:
        env = namespace.get("env")
        if env is not None:  # drive the example's env a little and check the collector kept its rules
            from tests.envs import run_episodes

            run_episodes(env, 6)
            env.close()
            stats = namespace["collector"].get_trajectory_statistics()
            assert stats["total_seen"] == 3  # every 2nd of 6 episodes is considered
            assert stats["total_trajectories"] + stats["rejected_trajectories"] == 3


def test_readme_ray_example_runs(tmp_path, monkeypatch):
    """The "Scaling out on Ray" example, scaled down (2 workers, 4,000 steps, a temporary path), on a local
    Ray instance it starts itself: only in a loopback-only network namespace (see tests/_peers.py)."""
    require_loopback("the README's Ray example (a local Ray instance)")
    ray = require("ray")
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
               if "collect_distributed(" in b]
    small = code
    for old, new in (("num_workers=8", "num_workers=2"), ("steps=10_000_000", "steps=4_000"),
                     ('"/shared/datasets/cartpole"', repr(str(tmp_path / "cartpole")))):
        assert old in small, f"the README's Ray example changed: {old!r} not found"
        small = small.replace(old, new)
    monkeypatch.chdir(tmp_path)
    if ray.is_initialized():
        ray.shutdown()
    namespace: dict = {}
    try:
        exec(compile(small, "README.md Ray block (scaled down)", "exec"), namespace)
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    finally:
        ray.shutdown()
    result, ds = namespace["result"], namespace["ds"]
    assert result.ok, result.summary()
    assert ds.total_steps == result.durable_steps == 4_000 and len(ds.manifests) == 2
