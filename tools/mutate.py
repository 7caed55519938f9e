"""Mutation testing of the core: plant realistic bugs one at a time and check the tests catch each.

Usage::

    python tools/mutate.py              # every mutant (make mutate); ~10-20 min on a 2-core machine
    python tools/mutate.py -k fsync     # mutants whose id contains "fsync"
    python tools/mutate.py --list       # the mutants and the tests each runs
    python tools/mutate.py --strict     # exit 1 if any mutant survives (for CI, once the list is all killed)

Each mutant replaces one exact snippet (which must occur exactly once, or the script says the list is
stale) in a temporary copy of the repository, compiles the file, and runs the mutant's focused tests
there (``pytest -x``); a failing run kills the mutant. An unmutated baseline run of every selected test
comes first: a test that fails or skips without a mutation cannot kill one.

The list is hand-written: each entry is a bug someone could plausibly write or "simplify" (dropping an
fsync, an off-by-one, a flag lost in an export), over the writer, shard and manifest storage, the
episode splitter, replay sampling and the exporters. Add one when you fix a bug the suite missed.
"""

from __future__ import annotations

import argparse
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("gym_aquacollect", "tests", "conftest.py", "pyproject.toml", "README.md", "setup.cfg")


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


W, M, S = "gym_aquacollect/storage/writer.py", "gym_aquacollect/storage/manifest.py", "gym_aquacollect/storage/shard.py"
BASE, BATCH = "gym_aquacollect/collectors/base.py", "gym_aquacollect/wrappers/_batched.py"
BUF, DS = "gym_aquacollect/collectors/buffer.py", "gym_aquacollect/dataset.py"
MIN, D4, ROBO = "gym_aquacollect/formats/minari.py", "gym_aquacollect/formats/d4rl.py", "gym_aquacollect/formats/robomimic.py"
T_ORDER, T_REL = "tests/test_durability_order.py", "tests/test_reliability.py"
T_CORR, T_RT = "tests/test_reliability_corruption.py", "tests/test_core_roundtrip.py"
T_VEC, T_VCOL = "tests/test_vector_wrapper.py", "tests/test_vector_collectors.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- writer -------------------------------------------------------------------------------------------
    Mutant("writer-no-shard-fsync", W, "                os.fsync(f.fileno())\n        return ShardRecord(",
           "                pass\n        return ShardRecord(", (T_ORDER,), "shard listed without being fsynced"),
    Mutant("writer-no-crc", W, "checksum=file_checksum(shard.path),", "checksum=None,", (T_ORDER, T_CORR),
           "shard listed without its CRC32"),
    Mutant("writer-flush-does-not-wait", W, "        if wait or final:\n            self._apply_finished(wait=True",
           "        if final:\n            self._apply_finished(wait=True", (T_REL, "tests/test_read_while_writing.py"),
           "flush() returns before the manifest lists the shards"),
    Mutant("writer-manifest-newest-first", W, "rec = self._finishing.pop(0).result()",
           "rec = self._finishing.pop().result()", (T_ORDER, T_RT, T_REL), "finished shards listed out of order"),
    Mutant("writer-never-closed", W, "self.manifest.closed = final", "self.manifest.closed = False",
           (T_ORDER, "tests/test_core_crash_cli.py", T_RT),
           "a cleanly closed writer's manifest not marked closed"),
    # -- manifest / checksums ---------------------------------------------------------------------------
    Mutant("manifest-tmp-not-fsynced", M, "            f.flush()\n            os.fsync(f.fileno())\n",
           "            f.flush()\n", (T_ORDER,), "manifest renamed into place before its bytes are durable"),
    Mutant("manifest-checksum-unchecked", M, "if stored != json_checksum(obj):", "if False:", (T_CORR,),
           "a corrupt JSON file read as valid"),
    Mutant("file-crc-last-chunk-only", M, "crc = zlib.crc32(b, crc)", "crc = zlib.crc32(b)", (T_CORR, T_ORDER),
           "file CRC32 covers only the last 8 MiB chunk"),
    # -- shard --------------------------------------------------------------------------------------------
    Mutant("shard-segment-merge-drops-steps", S, "            last[2] += obs_n\n            last[4] += step_n\n",
           "            last[2] += obs_n\n", (T_RT, "tests/test_reliability_hypothesis.py"),
           "contiguous segments merged without their steps"),
    Mutant("shard-block-segment-offset", S, "        rows[:, 3] += step0\n", "", (T_VEC, T_VCOL, T_RT),
           "batched segments not offset by the block's first step row"),
    # -- recording / splitter -----------------------------------------------------------------------------
    Mutant("collector-truncation-flag-lost", BASE,
           "flags = (_TERM if terminated else 0) | (_TRUNC if truncated else 0)",
           "flags = _TERM if terminated else 0", (T_RT, "tests/test_core_infos_errors.py"),
           "truncated episode ends stored as unfinished"),
    Mutant("splitter-obs-offsets", BATCH, "pieces[:, 1] = np.cumsum(n_obs) - n_obs",
           "pieces[:, 1] = np.cumsum(n_obs) - n_obs[0]", (T_VEC, T_VCOL), "sub-env observation rows misaligned"),
    Mutant("splitter-same-step-final-obs", BATCH, "fo = c.final_obs[k] if k < len(c.final_obs) else None",
           "fo = None", (T_VEC,), "SAME_STEP terminal observation dropped"),
    # -- reading --------------------------------------------------------------------------------------------
    Mutant("reader-interrupted-not-truncated", DS,
           "            a[-1] = True  # an episode interrupted", "            pass  # an episode interrupted",
           (T_RT, T_REL), "an interrupted episode read back without its final truncation"),
    Mutant("reader-partial-ignored", DS, "            if self.include_partial:\n                for key in sorted(open_segs):",
           "            if False:\n                for key in sorted(open_segs):", (T_REL,),
           "include_partial=True does not recover the running episode"),
    # -- replay sampling ------------------------------------------------------------------------------------
    Mutant("sample-next-obs-is-obs", BUF, "        nxt = oi + 1\n", "        nxt = oi\n",
           ("tests/test_collectors_buffer.py",), "next_obs equals obs"),
    Mutant("sample-never-newest", BUF, "idx = rng.integers(lo, hi, size=n)", "idx = rng.integers(lo, hi - 1, size=n)",
           ("tests/test_collectors_buffer.py",), "the newest transition is never sampled (off by one)"),
    # -- exports --------------------------------------------------------------------------------------------
    Mutant("minari-unfinished-not-truncated", MIN, "            trunc[-1] = True  # an episode closed",
           "            pass  # an episode closed", ("tests/test_export_minari.py",),
           "a Minari episode ends with neither flag"),
    Mutant("d4rl-timeouts-overlap-terminals", D4, "timeouts = trunc & ~term", "timeouts = trunc",
           ("tests/test_export_d4rl.py",), "terminals and timeouts both set (d3rlpy rejects)"),
    Mutant("d4rl-unfinished-no-timeout", D4, "                    timeouts[-1] = True\n",
           "                    pass\n", ("tests/test_export_d4rl.py",), "an unfinished D4RL episode has no end flag"),
    Mutant("robomimic-dones-terminal-only", ROBO, '"dones", data=(term | trunc).astype(np.uint8)',
           '"dones", data=term.astype(np.uint8)', ("tests/test_export_robomimic.py",), "truncations missing from dones"),
    Mutant("robomimic-next-obs-shifted", ROBO, 'f"next_obs/{key}", col[1:]', 'f"next_obs/{key}", col[:-1]',
           ("tests/test_export_robomimic.py",), "next_obs equals obs"),
)


def _copy_repo(dest: Path) -> None:
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / name)


def _pytest(cwd: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("AQUACOLLECT_REQUIRE_ALL", None)  # a skipped test cannot kill: the baseline reports skips instead
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=-rs",
           "--timeout", str(int(timeout)), *tests]
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout + 60)
        return out.returncode, out.stdout + out.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        return -1, "timed out", time.monotonic() - t0


def _apply(work: Path, m: Mutant) -> str | None:
    """Apply ``m`` in ``work``; return an error (stale or invalid mutant) or None."""
    path = work / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        return f"stale: the snippet occurs {text.count(m.old)} times in {m.file} (expected once); update the list"
    path.write_text(text.replace(m.old, m.new))
    try:
        py_compile.compile(str(path), doraise=True)
    except py_compile.PyCompileError as e:
        return f"invalid: the mutant does not compile: {e.msg}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only mutants whose id contains this")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a mutant survives")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated baseline run")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    args = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if args.k in m.id]
    if args.list:
        for m in mutants:
            print(f"{m.id:36s} {m.file:40s} {' '.join(m.tests)}\n{'':36s} {m.why}")
        return 0
    results: list[tuple[Mutant, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="aquacollect-mutate-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        _copy_repo(base)
        if not args.no_baseline:
            tests = tuple(sorted({t for m in mutants for t in m.tests}))
            rc, out, secs = _pytest(base, tests, args.timeout)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            print(f"baseline (no mutation): {last} [{secs:.0f} s]", flush=True)
            if rc != 0:
                print(out[-3000:])
                print("the unmutated tests fail: fix that first")
                return 2
            if "skipped" in last:
                print("warning: some selected tests skip here; they cannot kill mutants (see -rs above)")
                print("\n".join(line for line in out.splitlines() if line.startswith("SKIPPED")))
        for i, m in enumerate(mutants, 1):
            work = Path(tmp) / f"m{i:02d}"
            shutil.copytree(base, work)
            err = _apply(work, m)
            if err:
                results.append((m, err, 0.0))
            else:
                rc, out, secs = _pytest(work, m.tests, args.timeout)
                status = "killed" if rc != 0 else "SURVIVED"
                if rc == -1:
                    status = "killed (timeout)"
                results.append((m, status, secs))
            shutil.rmtree(work, ignore_errors=True)
            print(f"[{i}/{len(mutants)}] {m.id}: {results[-1][1]} ({results[-1][2]:.0f} s)", flush=True)
    killed = sum(r[1].startswith("killed") for r in results)
    survived = [r[0] for r in results if r[1] == "SURVIVED"]
    broken = [r for r in results if not r[1].startswith("killed") and r[1] != "SURVIVED"]
    print(f"\nmutation summary: {killed}/{len(results)} killed, {len(survived)} survived, {len(broken)} stale/invalid")
    print("| mutant | file | planted bug | tests run | result |\n|---|---|---|---|---|")
    for m, status, _ in results:
        print(f"| `{m.id}` | `{m.file.removeprefix('gym_aquacollect/')}` | {m.why} | "
              f"{', '.join(t.removeprefix('tests/') for t in m.tests)} | {status} |")
    if broken:
        return 2
    return 1 if (args.strict and survived) else 0


if __name__ == "__main__":
    sys.exit(main())
