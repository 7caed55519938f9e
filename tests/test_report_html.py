"""``aquacollect report``: a self-contained HTML page, rendered in real headless Chromium (Debian's package)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gym_aquacollect import CollectingVectorWrapper, CollectingWrapper, load_dataset

ROOT = Path(__file__).resolve().parents[1]


def _ensure_chromium() -> str:
    """Debian's ``chromium``; installed here (as root, non-interactively) when absent."""
    exe = shutil.which("chromium")
    if exe is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=900)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env, capture_output=True,
                       timeout=1800)
        exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("Debian's chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install -y chromium")
    return exe


@pytest.fixture(scope="module")
def chromium() -> str:
    return _ensure_chromium()


def render(chromium: str, page: Path, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message Chromium logged (errors, uncaught exceptions)."""
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", f"--user-data-dir={page.parent / '.chr'}"]
    if screenshot is not None:
        args += [f"--screenshot={screenshot}", "--window-size=1100,1500", "--hide-scrollbars"]
    else:
        args += ["--dump-dom"]
    p = subprocess.run([*args, page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    # the page's own messages; Chromium's internal pages (source: chrome://...) log notices of their own
    console = [ln for ln in p.stderr.splitlines() if ":CONSOLE" in ln and "source: chrome://" not in ln]
    return p.stdout, console


class _Blocks(gym.Env):
    """Dict observation with an RGB frame (a moving square) and a state vector; Box actions."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (24, 24, 3), np.uint8),
                                         "state": gym.spaces.Box(-5, 5, (3,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        img = np.zeros((24, 24, 3), np.uint8)
        x = self.t % 20
        img[8:14, x:x + 4] = (255, 160, 0)
        img[:, :, 2] += 40
        return {"image": img, "state": np.array([self.t / 10, -1.0, np.sin(self.t)], np.float32)}

    def step(self, action):
        self.t += 1
        return self._obs(), float(np.sum(action)), self.t >= 12 + (self.t % 3), False, {}


def _datasets(tmp: Path) -> dict[str, Path]:
    img = tmp / "blocks"
    with CollectingWrapper(_Blocks(), img, metadata={"policy": "random", "note": "</script><b>x"}) as env:
        env.reset(seed=0)
        for _ in range(90):
            *_, te, tr, _ = env.step(env.action_space.sample())
            if te or tr:
                env.reset()
    cp = tmp / "cartpole"
    for w in range(2):  # two writers
        with CollectingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=2), cp) as envs:
            envs.reset(seed=w)
            for _ in range(120):
                envs.step(envs.action_space.sample())
    return {"blocks": img, "cartpole": cp}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    out = {}
    for name, path in _datasets(tmp).items():
        page = tmp / f"{name}.html"
        r = subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", "report", str(path), "--out", str(page)],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")))
        assert r.returncode == 0, r.stderr
        out[name] = (path, page)
    return out


def test_report_is_self_contained(reports):
    for _, page in reports.values():
        text = page.read_text()
        # nothing fetched from anywhere: no external src/href/url()/import
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
        assert "url(http" not in text and "@import" not in text and "<link" not in text
        assert "<script src" not in text


def test_report_renders_in_chromium_without_console_errors(chromium, reports):
    for name, (path, page) in reports.items():
        dom, console = render(chromium, page)
        assert console == [], f"{name}: console messages {console}"
        ds = load_dataset(path)
        assert f'data-rendered="{len(ds)}"' in dom  # the script ran to its end and filled the table
        rows = re.findall(r"<tr( class=\"cut\")?><td>", dom)
        assert len(rows) == len(ds)
        assert sum(1 for r in rows if r) == ds.statistics()["interrupted_episodes"] >= 1
        assert dom.count("<svg") >= 3 and dom.count("<circle") >= len(ds)
        for section in ("card", "curves", "actions", "observations", "table"):
            assert f'id="{section}"' in dom
        stats = ds.statistics()
        assert f"{stats['total_steps']}" in dom and "format" in dom
    dom, _ = render(chromium, reports["blocks"][1])
    frames = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(frames) >= 8
    import base64
    import zlib

    png = base64.b64decode(frames[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    idat = png[png.index(b"IDAT") + 4:]
    raw = zlib.decompressobj().decompress(idat)
    first = load_dataset(reports["blocks"][0])[0].observations["image"][0]
    rows = np.frombuffer(raw[: 24 * (1 + 24 * 3)], np.uint8).reshape(24, 1 + 24 * 3)[:, 1:].reshape(24, 24, 3)
    np.testing.assert_array_equal(rows, first)  # the strip's first frame is the episode's first observation
    assert "&lt;/script&gt;&lt;b&gt;x" in dom  # run metadata is shown, escaped
    # Box actions: one histogram per dimension; the per-dimension observation range figure
    assert "action[0]" in dom and "action[1]" in dom and "observation/state: per-dimension" in dom


def test_console_check_catches_a_js_error(chromium, reports, tmp_path):
    """The check above can fail: the same page with a script error, and with broken data, is caught."""
    text = reports["cartpole"][1].read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("</main>", "</main><script>window.notThere.x = 1;</script>"))
    dom, console = render(chromium, broken)
    assert any("Uncaught TypeError" in c for c in console), console
    bad_data = tmp_path / "bad_data.html"
    bad_data.write_text(re.sub(r'(<script type="application/json" id="episodes-data">)\{', r"\1{oops", text))
    dom, console = render(chromium, bad_data)
    assert any("SyntaxError" in c for c in console) and "data-rendered" not in dom


def test_sorting_works(chromium, reports, tmp_path):
    """Clicking the 'return' header sorts the rows (driven by a script appended to a copy of the page)."""
    text = reports["cartpole"][1].read_text()
    page = tmp_path / "sorted.html"
    driver = ("<script>const th=[...document.querySelectorAll('#episodes th')].find(h=>h.textContent==='return');"
              "th.click();th.click();document.body.dataset.sortedBy=th.className;</script>")
    page.write_text(text.replace("</body>", driver + "</body>"))
    dom, console = render(chromium, page)
    assert console == []
    assert 'data-sorted-by="desc"' in dom or 'data-sorted-by=" desc"' in dom
    body = dom[dom.index("<tbody>"):]
    cells = re.findall(r"<tr(?: class=\"cut\")?>((?:<td[^>]*>[^<]*</td>)+)</tr>", body)
    returns = [float(re.findall(r"<td[^>]*>([^<]*)</td>", c)[4]) for c in cells]
    assert returns == sorted(returns, reverse=True) and len(set(returns)) > 1


def test_screenshot(chromium, reports, tmp_path):
    shot = tmp_path / "shot.png"
    render(chromium, reports["blocks"][1], screenshot=shot)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_report_of_an_imported_minari_dataset(chromium, reports, tmp_path, monkeypatch):
    """Any format load_dataset opens gets a report (here our export read back through Minari's files)."""
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    src = load_dataset(reports["cartpole"][0])
    src.to_minari("aquacollect/report-test-v0")
    page = tmp_path / "m.html"
    r = subprocess.run([sys.executable, "-m", "gym_aquacollect.cli", "report", "aquacollect/report-test-v0",
                        "--out", str(page)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert r.returncode == 0, r.stderr
    dom, console = render(chromium, page)
    assert console == [] and f'data-rendered="{len(src)}"' in dom
