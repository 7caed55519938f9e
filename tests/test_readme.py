"""The README's Python examples run as written (in a temporary directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    # self-contained examples only; the Ray block needs a cluster path and 10M steps (tests/test_distributed.py)
    return [b for b in blocks if "import" in b and "collect_distributed" not in b]


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _python_blocks()[index]
    namespace: dict = {}
    exec(compile(code, f"README.md block {index}", "exec"), namespace)
    if "load_dataset" in code and "ds" in namespace:
        assert namespace["ds"].total_steps > 0
    if "collector" in namespace:
        env = namespace.get("env")
        if env is not None:  # drive the example's env a little and check the collector kept its rules
            from tests.envs import run_episodes

            run_episodes(env, 6)
            env.close()
            stats = namespace["collector"].get_trajectory_statistics()
            assert stats["total_seen"] == 3  # every 2nd of 6 episodes is considered
            assert stats["total_trajectories"] + stats["rejected_trajectories"] == 3
