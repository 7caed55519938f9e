"""A self-contained HTML report of a dataset (``aquacollect report DIR --out report.html``).

Contents:
    * :func:`episode_table` - one row per episode: id, wall-clock start/end, length, return, end flags,
      why it was cut short (``interrupted``), ``env_index`` and the writer that recorded it.
    * :func:`timeline` - the episodes in wall-clock order with x = seconds since the first episode
      started (episode index when the dataset has no times): one learning curve for a dataset recorded
      by several writers. ``aquacollect plot`` and the report use it.
    * :func:`write_report` - one HTML file, no network access needed: a dataset card (env, spaces, size,
      writers, runs and their metadata, format version), returns and lengths over time, action
      histograms, per-dimension observation ranges, frame strips for image observations (inline PNG
      data URIs) and a sortable episode table. Plots are inline SVG; the data are embedded as JSON.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from gym_aquacollect import CollectingWrapper, load_dataset
    >>> path = tempfile.mkdtemp() + "/ds"
    >>> with CollectingWrapper(gym.make("CartPole-v1"), path) as env:
    ...     _ = env.reset(seed=0)
    ...     _ = env.action_space.seed(0)
    ...     for _ in range(100):
    ...         *_, term, trunc, _ = env.step(env.action_space.sample())
    ...         if term or trunc:
    ...             _ = env.reset()
    >>> ds = load_dataset(path)
    >>> t = episode_table(ds)
    >>> int(t["length"].sum()), t["interrupted"][-1]
    (100, 'close')
    >>> out = write_report(ds, path + "/../report.html")
    >>> "<svg" in open(out).read()
    True
"""

from __future__ import annotations

import base64
import html
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["episode_table", "timeline", "write_report", "png_bytes"]


def episode_table(ds: Any) -> dict[str, np.ndarray]:
    """Per-episode columns: ``id, t_start, t_end, length, return, terminated, truncated, interrupted,
    env_index, writer`` (times NaN, ``env_index`` -1 and ``writer`` ``""`` where unknown)."""
    n = len(ds)
    lengths = np.asarray(getattr(ds, "episode_lengths", None) if hasattr(ds, "episode_lengths")
                         else [len(e) for e in ds], dtype=np.int64)
    returns = np.asarray(getattr(ds, "episode_returns", None) if hasattr(ds, "episode_returns")
                         else [float(np.sum(e.rewards)) for e in ds], dtype=np.float64)
    if hasattr(ds, "episode_times"):
        times, why = ds.episode_times, ds.episode_interrupted
    else:
        times, why = np.full((n, 2), np.nan), np.full(n, "", dtype=object)
        for i, e in enumerate(ds):
            m = e.metadata
            why[i] = str(m.get("interrupted") or "")
            for j, k in enumerate(("t_start", "t_end")):
                if isinstance(m.get(k), (int, float)):
                    times[i, j] = m[k]
    term = np.zeros(n, bool)
    trunc = np.zeros(n, bool)
    env_index = np.full(n, -1, np.int64)
    writer = np.full(n, "", dtype=object)
    refs = getattr(ds, "_refs", None)
    shard_writer: dict[int, str] = {}
    if refs is not None:
        for m in getattr(ds, "manifests", []):
            for rec in m.shards:
                si = ds._reader_index.get(rec.file)
                if si is not None:
                    shard_writer[si] = m.writer_id
    for i in range(n):
        if refs is not None:
            r = refs[i]
            term[i], trunc[i] = bool(r.flags & 1), bool(r.flags & 2)
            writer[i] = r.extra_meta.get("writer_id") or shard_writer.get(r.segments[0][0] if r.segments else -1, "")
        meta = ds[i].metadata
        if refs is None:
            term[i], trunc[i] = bool(meta.get("terminated")), bool(meta.get("truncated"))
        if isinstance(meta.get("env_index"), (int, np.integer)):
            env_index[i] = int(meta["env_index"])
    return {"id": np.arange(n), "t_start": times[:, 0], "t_end": times[:, 1], "length": lengths,
            "return": returns, "terminated": term, "truncated": trunc, "interrupted": why,
            "env_index": env_index, "writer": writer}


def timeline(ds: Any, table: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Episodes in wall-clock order (by end time) with ``x`` = seconds since the first start, or in
    index order with ``x`` = episode index when the dataset stores no times. Returns the table's columns
    reordered plus ``x``, ``order`` (episode ids) and ``x_label``."""
    t = episode_table(ds) if table is None else table
    te = t["t_end"]
    if len(te) and np.isfinite(te).any():
        order = np.lexsort((t["id"], np.nan_to_num(t["t_start"], nan=np.inf), np.nan_to_num(te, nan=np.inf)))
        t0 = np.nanmin(t["t_start"]) if np.isfinite(t["t_start"]).any() else np.nanmin(te)
        x = te[order] - t0
        label = "wall-clock time (s since the first episode started)"
    else:
        order = np.arange(len(te))
        x = order.astype(float)
        label = "episode (in the order they finished)"
    out = {k: v[order] for k, v in t.items()}
    out.update(x=x, order=order, x_label=label)
    return out


# -- PNG without dependencies ------------------------------------------------------------------------------
def png_bytes(img: np.ndarray) -> bytes:
    """Encode an ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 image as PNG.

    Example:
        >>> png_bytes(np.zeros((2, 3, 3), np.uint8))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    h, w = a.shape[:2]
    ctype = {2: 0, 3: {3: 2, 4: 6}.get(a.shape[2] if a.ndim == 3 else 0, 2)}[a.ndim]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _is_image(space: Any) -> bool:
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and
            (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[2] in (1, 3, 4)))
            and space.shape[0] >= 8 and space.shape[1] >= 8)


def _leaves(space: Any, value: Any, name: str = "") -> list[tuple[str, Any, Any]]:
    """``(name, space, value)`` for each Box/Discrete/MultiDiscrete/MultiBinary leaf of a structured value."""
    if isinstance(space, spaces.Dict):
        return [x for k, s in space.spaces.items() for x in _leaves(s, value[k], f"{name}/{k}" if name else k)]
    if isinstance(space, spaces.Tuple):
        return [x for j, s in enumerate(space.spaces) for x in _leaves(s, value[j], f"{name}/{j}" if name else str(j))]
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        return [(name, space, np.asarray(value))]
    return []


# -- SVG ---------------------------------------------------------------------------------------------------
_W, _H, _PAD = 640, 220, 44


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _axes(x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str) -> tuple[Any, Any, list[str]]:
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y1 = y0 + 1

    def sx(x):
        return _PAD + (np.asarray(x, float) - x0) / (x1 - x0) * (_W - _PAD - 10)

    def sy(y):
        return _H - _PAD + 10 - (np.asarray(y, float) - y0) / (y1 - y0) * (_H - _PAD - 10)

    parts = [f'<line x1="{_PAD}" y1="{_H - _PAD + 10}" x2="{_W - 10}" y2="{_H - _PAD + 10}" class="ax"/>',
             f'<line x1="{_PAD}" y1="10" x2="{_PAD}" y2="{_H - _PAD + 10}" class="ax"/>']
    for f in (0, 0.5, 1):
        xv, yv = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        anchor = {0: "start", 0.5: "middle", 1: "end"}[f]
        parts.append(f'<text x="{float(sx(xv)):.1f}" y="{_H - _PAD + 24}" class="tk" text-anchor="{anchor}">{_fmt(xv)}</text>')
        parts.append(f'<text x="{_PAD - 4}" y="{float(sy(yv)) + 4:.1f}" class="tk" text-anchor="end">{_fmt(yv)}</text>')
    parts.append(f'<text x="{(_W + _PAD) / 2}" y="{_H - 4}" class="lb" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{_H / 2}" class="lb" transform="rotate(-90 12 {_H / 2})" '
                 f'text-anchor="middle">{html.escape(ylabel)}</text>')
    return sx, sy, parts


def _svg(parts: list[str], title: str, cls: str = "plot") -> str:
    return (f'<figure class="{cls}"><svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
            f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
            f'<figcaption>{html.escape(title)}</figcaption></figure>')


def _scatter(x: np.ndarray, y: np.ndarray, cut: np.ndarray, xlabel: str, ylabel: str, title: str) -> str:
    if not len(x):
        return f"<p>{html.escape(title)}: no episodes</p>"
    sx, sy, parts = _axes(float(np.min(x)), float(np.max(x)), float(np.min(y)), float(np.max(y)), xlabel, ylabel)
    px, py = sx(x), sy(y)
    for a, b, c in zip(px.tolist(), py.tolist(), cut.tolist()):
        parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2" class="{"cut" if c else "pt"}"/>')
    ok = ~cut
    if ok.sum() >= 5:
        w = max(2, int(ok.sum()) // 20)
        m = np.convolve(y[ok], np.ones(w) / w, mode="valid")
        xs = px[ok][w - 1:]
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs.tolist(), sy(m).tolist()))
        parts.append(f'<polyline points="{pts}" class="mean"/>')
    parts.append(f'<text x="{_W - 12}" y="20" class="tk" text-anchor="end">● complete  '
                 f'<tspan class="cutl">● interrupted</tspan>  — moving mean</text>')
    return _svg(parts, title)


def _bars(labels: list[str], counts: np.ndarray, title: str, xlabel: str) -> str:
    counts = np.asarray(counts, float)
    sx, sy, parts = _axes(0, len(counts), 0, float(counts.max()) if len(counts) else 1, xlabel, "count")
    bw = (_W - _PAD - 10) / max(len(counts), 1)
    for j, c in enumerate(counts.tolist()):
        x, y = float(sx(j)), float(sy(c))
        parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                     f'height="{max(_H - _PAD + 10 - y, 0):.1f}" class="bar"><title>{html.escape(labels[j])}: '
                     f'{int(c)}</title></rect>')
    return _svg(parts, title, "plot small")


def _ranges(lo: np.ndarray, hi: np.ndarray, mean: np.ndarray, title: str) -> str:
    d = len(lo)
    sx, sy, parts = _axes(-0.5, d - 0.5, float(np.min(lo)), float(np.max(hi)), "dimension", "value")
    for j in range(d):
        x = float(sx(j))
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{float(sy(lo[j])):.1f}" y2="{float(sy(hi[j])):.1f}" '
                     f'class="rng"><title>dim {j}: min {_fmt(lo[j])}, mean {_fmt(mean[j])}, max {_fmt(hi[j])}</title></line>')
        parts.append(f'<circle cx="{x:.1f}" cy="{float(sy(mean[j])):.1f}" r="2.5" class="pt"/>')
    return _svg(parts, title)


# -- the page ----------------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#0e4f6e;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
main{padding:8px 28px 40px;max-width:1400px}section{background:#fff;border-radius:8px;padding:12px 18px;margin:14px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}h2{font-size:17px;margin:4px 0 10px;color:#0e4f6e}
.card{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:4px 24px}
.card div{padding:3px 0;border-bottom:1px solid #eef1f4}.card b{display:inline-block;min-width:120px;color:#52606d}
.grid{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0}figcaption{font-size:12px;color:#52606d;text-align:center}
svg .ax{stroke:#9aa5b1}svg .tk{font-size:10px;fill:#52606d}svg .lb{font-size:11px;fill:#323f4b}
svg .pt{fill:#1f77b4;opacity:.6}svg .cut{fill:#e8590c;opacity:.9}svg .cutl{fill:#e8590c}svg .mean{fill:none;stroke:#0b7a3e;stroke-width:2}
svg .bar{fill:#3c8dbc}svg .rng{stroke:#3c8dbc;stroke-width:4;stroke-linecap:round}
.small svg{width:320px;height:110px}table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{padding:3px 8px;border-bottom:1px solid #eef1f4;text-align:right}th{cursor:pointer;background:#eef3f7;position:sticky;top:0}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}td.l,th.l{text-align:left}tr.cut td{color:#b34700}
.strip{display:flex;gap:4px;align-items:flex-end;margin:6px 0}.strip img{image-rendering:pixelated;border:1px solid #ccd;
height:84px}pre{background:#f5f7fa;padding:6px;border-radius:4px;white-space:pre-wrap;margin:2px 0;font-size:12px}
#tablewrap{max-height:520px;overflow:auto}
"""

_JS = """
(function(){
  const data = JSON.parse(document.getElementById('episodes-data').textContent);
  const cols = data.columns, rows = data.rows;
  const table = document.getElementById('episodes');
  const thead = table.createTHead().insertRow();
  cols.forEach(function(c, j){
    const th = document.createElement('th'); th.textContent = c; th.dataset.col = j;
    if (c === 'interrupted' || c === 'writer' || c === 'started') th.className = 'l';
    th.addEventListener('click', function(){ sortBy(j, th); }); thead.appendChild(th);
  });
  const body = table.createTBody();
  function render(){
    body.textContent = '';
    rows.forEach(function(r){
      const tr = body.insertRow(); if (r[cols.indexOf('interrupted')]) tr.className = 'cut';
      r.forEach(function(v, j){ const td = tr.insertCell();
        td.textContent = (typeof v === 'number' && !Number.isInteger(v)) ? v.toPrecision(5) : (v === null ? '' : String(v));
        if (cols[j] === 'interrupted' || cols[j] === 'writer' || cols[j] === 'started') td.className = 'l'; });
    });
  }
  let state = {col: 0, dir: 1};
  function sortBy(j, th){
    state.dir = (state.col === j) ? -state.dir : 1; state.col = j;
    rows.sort(function(a, b){ const x = a[j], y = b[j];
      if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
      return (x < y ? -1 : 1) * state.dir; });
    table.querySelectorAll('th').forEach(function(h){ h.className = h.className.replace(/ ?(asc|desc)/g, ''); });
    th.className += (state.dir > 0 ? ' asc' : ' desc');
    render();
  }
  render();
  document.body.dataset.rendered = String(rows.length);
})();
"""


def _dataset_card(ds: Any, t: dict[str, np.ndarray]) -> str:
    meta = getattr(ds, "metadata", {}) or {}
    desc = meta.get("env_description") or {}
    spec = getattr(ds, "env_spec", None)
    env_id = getattr(spec, "id", None) or desc.get("id")
    if env_id is None and isinstance(spec, str):
        try:
            env_id = json.loads(spec).get("id")
        except ValueError:
            env_id = None
    stats = ds.statistics()
    writers = sorted({w for w in t["writer"].tolist() if w})
    size = stats.get("bytes_on_disk")
    items = [
        ("path", str(getattr(ds, "path", ""))), ("env", env_id), ("observation space", ds.observation_space),
        ("action space", ds.action_space), ("episodes", f"{stats['total_episodes']} ({stats.get('complete_episodes', '?')} "
                                                        f"complete, {stats.get('interrupted_episodes', 0)} interrupted)"),
        ("steps", stats["total_steps"]), ("size on disk", f"{size / 1e6:.2f} MB" if size is not None else None),
        ("writers", len(writers) or stats.get("writers")), ("shards", stats.get("shards")),
        ("format", f"{meta.get('format', '?')} version {meta.get('format_version', '?')}"),
        ("created", meta.get("created")), ("collector", (meta.get("collector") or {}).get("class")
                                           if isinstance(meta.get("collector"), dict) else meta.get("collector")),
        ("avg return (complete)", _fmt(stats["avg_episode_reward"])),
        ("avg length (complete)", _fmt(stats["avg_episode_length"])),
        ("terminated / truncated", f"{stats.get('terminated_episodes')} / {stats.get('truncated_episodes')}"),
    ]
    cells = "".join(f"<div><b>{html.escape(k)}</b> {html.escape(str(v))}</div>" for k, v in items if v is not None)
    runs = []
    if meta.get("metadata"):
        runs.append(("dataset", meta["metadata"]))
    for m in getattr(ds, "manifests", []):
        extra = getattr(m, "metadata", None) or getattr(m, "run", None)
        if extra:
            runs.append((m.writer_id, extra))
    run_html = "".join(f"<div><b>run {html.escape(str(w))}</b><pre>{html.escape(json.dumps(r, indent=1, default=repr))}</pre></div>"
                       for w, r in runs) or "<div><b>runs</b> no run metadata recorded</div>"
    return f'<section id="card"><h2>Dataset</h2><div class="card">{cells}</div>{run_html}</section>'


def _sample_steps(ds: Any, max_steps: int, what: str) -> list[Any]:
    """``what`` ("actions" or "observations") of evenly spread episodes, about ``max_steps`` rows in all."""
    n = len(ds)
    if not n:
        return []
    lengths = ds.episode_lengths if hasattr(ds, "episode_lengths") else np.asarray([len(e) for e in ds])
    mean = max(1.0, float(np.mean(lengths)))
    k = int(min(n, max(1, max_steps // mean)))
    idx = np.unique(np.linspace(0, n - 1, num=k).round().astype(int))
    return [getattr(ds[int(i)], what) for i in idx if lengths[int(i)] > 0 or what == "observations"]


def _stack(space: Any, values: list[Any]) -> list[tuple[str, Any, np.ndarray]]:
    """Concatenate per-episode structured values leaf by leaf."""
    if not values:
        return []
    per = [_leaves(space, v) for v in values]
    out = []
    for j, (name, sp, _) in enumerate(per[0]):
        out.append((name, sp, np.concatenate([p[j][2] for p in per])))
    return out


def _value_counts(a: np.ndarray, start: int, n: int, max_bars: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each value of a discrete action: every value of the space when it has at most ``max_bars``,
    else only the values that occur (the space's size comes from the dataset: never loop over it)."""
    if 0 < n <= max_bars:
        vals = np.arange(start, start + n)
        return vals, np.array([(a == v).sum() for v in vals])
    vals, counts = np.unique(np.asarray(a).reshape(-1), return_counts=True)
    top = np.argsort(counts)[::-1][:max_bars]
    return vals[np.sort(top)], counts[np.sort(top)]


def _finite(x: float) -> float | None:
    """A JSON-safe number: NaN/inf (a diverging env's reward) become null, which JSON.parse accepts."""
    return float(x) if np.isfinite(x) else None


def _action_section(ds: Any, max_steps: int) -> str:
    figs = []
    for name, sp, a in _stack(ds.action_space, _sample_steps(ds, max_steps, "actions")):
        label = f"action{('/' + name) if name else ''}"
        if isinstance(sp, spaces.Discrete):
            vals, counts = _value_counts(a, int(sp.start), int(sp.n))
            figs.append(_bars([str(v) for v in vals.tolist()], counts, f"{label} (Discrete {sp.n})", "action"))
        elif isinstance(sp, (spaces.MultiDiscrete, spaces.MultiBinary)):
            flat = a.reshape(len(a), -1)
            nvec = np.asarray(sp.nvec).reshape(-1) if isinstance(sp, spaces.MultiDiscrete) else np.full(flat.shape[1], 2)
            for d in range(min(flat.shape[1], 8)):
                vals, counts = _value_counts(flat[:, d], 0, int(nvec[d]))
                figs.append(_bars([str(v) for v in vals.tolist()], counts, f"{label}[{d}]", "value"))
        else:
            flat = a.reshape(len(a), -1).astype(np.float64)
            for d in range(min(flat.shape[1], 12)):
                col = flat[:, d][np.isfinite(flat[:, d])]
                if not len(col):
                    continue
                counts, edges = np.histogram(col, bins=30)
                figs.append(_bars([f"{_fmt(edges[k])}..{_fmt(edges[k + 1])}" for k in range(30)], counts,
                                  f"{label}[{d}]: {_fmt(edges[0])} .. {_fmt(edges[-1])}", "value"))
    body = "".join(figs) or "<p>no plottable action leaves (Text or empty)</p>"
    return f'<section id="actions"><h2>Actions</h2><div class="grid">{body}</div></section>'


def _obs_section(ds: Any, max_steps: int, frames: int) -> str:
    figs, strips = [], []
    leaves = _stack(ds.observation_space, _sample_steps(ds, max_steps, "observations"))
    for name, sp, o in leaves:
        label = f"observation{('/' + name) if name else ''}"
        if _is_image(sp):
            continue
        flat = o.reshape(len(o), -1).astype(np.float64)
        if flat.shape[1] > 256:
            figs.append(f"<p>{html.escape(label)}: {flat.shape[1]} dimensions (ranges of the first 256)</p>")
            flat = flat[:, :256]
        lo, hi, mean = np.nanmin(flat, 0), np.nanmax(flat, 0), np.nanmean(flat, 0)
        figs.append(_ranges(lo, hi, mean, f"{label}: per-dimension min / mean / max ({len(flat)} rows)"))
    image_leaves = [(name, sp) for name, sp, _ in leaves if _is_image(sp)] if leaves else []
    if image_leaves and len(ds):
        for e in list(range(min(3, len(ds)))):
            ep = ds[e]
            for name, _sp in image_leaves:
                obs = dict((nm, v) for nm, _, v in _leaves(ds.observation_space, ep.observations))[name]
                pick = np.unique(np.linspace(0, len(obs) - 1, num=min(frames, len(obs))).round().astype(int))
                imgs = "".join(f'<img alt="episode {e} step {k}" title="episode {e}, row {k}" '
                               f'src="data:image/png;base64,{base64.b64encode(png_bytes(obs[k])).decode()}"/>'
                               for k in pick.tolist())
                strips.append(f"<div><b>episode {e}{(' ' + html.escape(name)) if name else ''}</b>"
                              f'<div class="strip">{imgs}</div></div>')
    body = "".join(figs) or ""
    strip_html = f"<h2>Frames</h2>{''.join(strips)}" if strips else ""
    return f'<section id="observations"><h2>Observations</h2><div class="grid">{body}</div>{strip_html}</section>'


def write_report(ds: Any, out: str | Path, *, title: str | None = None, max_steps: int = 200_000,
                 frames: int = 8) -> Path:
    """Write the HTML report of ``ds`` (any dataset :func:`~gym_aquacollect.load_dataset` opens) to ``out``.

    Args:
        ds: the dataset.
        out: the HTML file to write (its directory is created).
        title: page title (default: the dataset directory's name).
        max_steps: about how many steps to read for the action and observation figures (spread over
            the dataset's episodes).
        frames: frames per strip for image observations.
    """
    t = episode_table(ds)
    tl = timeline(ds, t)
    cut = tl["interrupted"] != ""
    name = title or Path(str(getattr(ds, "path", "dataset"))).name
    curves = (_scatter(tl["x"], tl["return"], cut, tl["x_label"], "return", "episode return over time")
              + _scatter(tl["x"], tl["length"].astype(float), cut, tl["x_label"], "steps", "episode length over time"))
    cols = ["id", "started", "duration s", "length", "return", "terminated", "truncated", "interrupted",
            "env_index", "writer"]
    t0 = np.nanmin(t["t_start"]) if np.isfinite(t["t_start"]).any() else np.nan
    rows = []
    for i in range(len(t["id"])):
        ts, te = t["t_start"][i], t["t_end"][i]
        rows.append([int(t["id"][i]), None if not np.isfinite(ts) else round(float(ts - t0), 3),
                     None if not (np.isfinite(ts) and np.isfinite(te)) else round(float(te - ts), 3),
                     int(t["length"][i]), _finite(t["return"][i]), bool(t["terminated"][i]), bool(t["truncated"][i]),
                     str(t["interrupted"][i]), int(t["env_index"][i]) if t["env_index"][i] >= 0 else None,
                     str(t["writer"][i])[:12]])
    cols[1] = "started (s)"
    data = json.dumps({"columns": cols, "rows": rows}, allow_nan=False).replace("</", "<\\/")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)} - gym_aquacollect report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body><header><h1>{html.escape(name)}</h1><div>gym_aquacollect dataset report</div></header><main>
{_dataset_card(ds, t)}
<section id="curves"><h2>Returns and lengths</h2><div class="grid">{curves}</div></section>
{_action_section(ds, max_steps)}
{_obs_section(ds, max_steps, frames)}
<section id="table"><h2>Episodes</h2><p>Click a column to sort. Interrupted episodes (cut by close(), reset(),
a crash) are shown in orange and left out of the moving mean and the statistics' averages.</p>
<div id="tablewrap"><table id="episodes"></table></div></section>
</main>
<script type="application/json" id="episodes-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
