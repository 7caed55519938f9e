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
        # how many steps the example records: a `# records N steps` comment, else its `for _ in range(N):` loop
        ds = namespace["ds"]
        said = re.search(r"# records ([\d_,]+) steps", code)
        loop = re.search(r"for _ in range\(([\d_]+)\):", code)
        assert said or loop, ("a README example that loads a dataset records a known number of steps: a "
                              "`for _ in range(N):` loop or a `# records N steps` comment")
        want = int((said or loop).group(1).replace(",", ""))
        if said and "less one autoreset step per finished episode" in code:
            # NEXT_STEP autoreset: a finished sub-env episode's reset step is no transition (one per episode
            # whose reset came inside the loop: all complete ones but those ending on the last step)
            complete = sum(not ep.metadata.get("interrupted") for ep in ds)
            n_sub = len({ep.metadata.get("env_index") for ep in ds})
            assert want - complete <= ds.total_steps <= want - complete + n_sub
        else:
            assert ds.total_steps == want  # every step recorded (the open episode stored at close)
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
