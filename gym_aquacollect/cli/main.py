"""The ``aquacollect`` command line.

Contents:
    * ``aquacollect record ENV_ID --steps N --out DIR`` - record a Gymnasium env (random policy, or
      ``--policy module:callable``) and print the dataset's statistics.
    * ``aquacollect info DIR`` - statistics, spaces and layout of a dataset.
    * ``aquacollect report DIR --out report.html`` - a self-contained HTML report (:mod:`gym_aquacollect.report`).
    * ``export``, ``validate``, ``replay``, ``plot`` - in :mod:`gym_aquacollect.cli_formats`.
    * :func:`main` - the entry point; :func:`build_parser` - the argparse tree (other modules add
      subcommands through :func:`add_command`).

Run ``aquacollect --help`` or ``aquacollect COMMAND --help``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main", "build_parser", "add_command", "load_policy", "DEFAULT_ENV"]

#: What ``aquacollect record`` records when no env id is given.
DEFAULT_ENV = "CartPole-v1"

_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def add_command(register: Callable[[argparse._SubParsersAction], None]) -> Callable:
    """Register a function that adds a subcommand to the parser (used by optional modules)."""
    _EXTRA_COMMANDS.append(register)
    return register


def load_policy(spec: str) -> Callable[..., Any]:
    """Import ``module:callable`` (``module.path:attr``); the callable maps an observation (a batch for
    ``--num-envs`` > 1) to an action. A callable that takes the env (``policy(env)``) is allowed too when
    the attribute is a factory marked with ``make_policy`` in its name."""
    if ":" not in spec:
        raise SystemExit(f"--policy {spec!r}: expected 'module:callable', e.g. 'my_pkg.policies:greedy'")
    mod_name, attr = spec.split(":", 1)
    sys.path.insert(0, ".")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise SystemExit(f"--policy {spec!r}: cannot import module {mod_name!r}: {e}") from None
    try:
        fn = getattr(mod, attr)
    except AttributeError:
        raise SystemExit(f"--policy {spec!r}: module {mod_name!r} has no attribute {attr!r}") from None
    if not callable(fn):
        raise SystemExit(f"--policy {spec!r}: {attr!r} is not callable")
    return fn


def _print_stats(stats: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(stats, indent=2, default=repr))
        return
    width = max(len(k) for k in stats) if stats else 0
    for k, v in stats.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        print(f"  {k:<{width}}  {v}")


def compression_arg(text: str) -> Any:
    """``--compression`` value: ``auto``, ``none``, ``lzf``, ``gzip`` or ``gzip:LEVEL`` (0-9), as the
    wrappers' ``compression=`` argument; anything else is an argparse error in CLI syntax.

    Example:
        >>> compression_arg("gzip:7"), compression_arg("none"), compression_arg("lzf")
        (('gzip', 7), None, 'lzf')
    """
    t = text.strip().lower()
    if t in ("auto", "lzf", "gzip"):
        return t
    if t == "none":
        return None
    if t.startswith("gzip:") and t[5:].isdigit() and 0 <= int(t[5:]) <= 9:
        return ("gzip", int(t[5:]))
    raise argparse.ArgumentTypeError(f"{text!r} is not one of auto, none, lzf, gzip, gzip:LEVEL (LEVEL 0-9), "
                                     "e.g. --compression gzip:4")


def _import_modules(names: list[str] | None) -> None:
    """``--import MODULE`` (repeatable): import plugin modules that register envs (e.g. ``ale_py``)."""
    for name in names or []:
        sys.path.insert(0, ".")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise SystemExit(f"aquacollect record: --import {name}: cannot import it ({e}); install the package "
                             "that provides it") from None


def _unknown_env_message(env_id: str, error: Exception) -> str:
    """One line: the env id is not registered, with close matches from the registry."""
    import difflib

    import gymnasium as gym

    ids = list(gym.registry.keys())
    close = difflib.get_close_matches(env_id, ids, n=4, cutoff=0.6)
    if not close:  # also match without namespace/version (e.g. 'cartpole' -> 'CartPole-v1')
        low = {i.lower(): i for i in ids}
        close = [low[m] for m in difflib.get_close_matches(env_id.lower(), list(low), n=4, cutoff=0.5)]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    plugin = "" if ":" in env_id else (" Plugin envs need their module imported first: --import MODULE "
                                        "(e.g. --import ale_py for ALE/Pong-v5) or MODULE:ENV_ID.")
    return f"aquacollect record: unknown env id {env_id!r} ({type(error).__name__}){hint}{plugin}"


def _make_env(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    try:
        if args.num_envs > 1:
            return gym.make_vec(args.env_id, num_envs=args.num_envs, **env_kwargs)
        return gym.make(args.env_id, **env_kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound,
            gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as e:
        raise SystemExit(_unknown_env_message(args.env_id, e)) from None
    except ModuleNotFoundError as e:
        raise SystemExit(f"aquacollect record: {args.env_id!r}: {e}; install it, or pass --import MODULE") from None
    except TypeError as e:
        if env_kwargs:
            raise SystemExit(f"aquacollect record: --env-kwargs {json.dumps(env_kwargs)} rejected by "
                             f"{args.env_id}: {e}") from None
        raise


def _parse_env_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"aquacollect record: --env-kwargs {text!r} is not valid JSON ({e}); pass a JSON object, "
                         "e.g. --env-kwargs '{\"max_episode_steps\": 100}'") from None
    if not isinstance(value, dict):
        raise SystemExit(f"aquacollect record: --env-kwargs must be a JSON object of gym.make keyword arguments, "
                         f"got {type(value).__name__} {text!r}")
    return value


def _cmd_record(args: argparse.Namespace) -> int:
    from loguru import logger
    from tqdm import tqdm

    from gym_aquacollect import CollectingWrapper, load_dataset

    compression: Any = args.compression
    from gym_aquacollect.storage.manifest import is_dataset_dir

    if is_dataset_dir(args.out):
        if args.overwrite:
            import shutil

            shutil.rmtree(args.out)
        elif not args.append:
            raise SystemExit(
                f"aquacollect record: {args.out} already holds a dataset; pass --append to add to it, "
                "--overwrite to replace it, or choose another --out"
            )
    policy = load_policy(args.policy) if args.policy else None
    env_kwargs = _parse_env_kwargs(args.env_kwargs)
    _import_modules(args.imports)
    inner = _make_env(args, env_kwargs)
    if args.num_envs > 1:
        from gym_aquacollect import CollectingVectorWrapper

        env = CollectingVectorWrapper(inner, args.out, compression=compression)
    else:
        env = CollectingWrapper(inner, args.out, compression=compression)
    start = time.perf_counter()
    n_envs = max(1, args.num_envs)
    # log lines (the writer's warnings) go through tqdm.write while the bar is shown, so they land on their
    # own line above the bar instead of being glued to it
    logger.remove()
    sink = logger.add(lambda m: tqdm.write(str(m), end="", file=sys.stderr), level="WARNING", colorize=False)
    with env, tqdm(total=args.steps, unit="step", desc=f"recording {args.env_id}", disable=args.quiet,
                   mininterval=0.5) as bar:
        obs, _ = env.reset(seed=args.seed)
        env.action_space.seed(args.seed)
        done_steps = 0
        while done_steps < args.steps:
            action = policy(obs) if policy else env.action_space.sample()
            obs, _, term, trunc, _ = env.step(action)
            done_steps += n_envs
            if n_envs == 1 and (term or trunc):
                obs, _ = env.reset()
            if done_steps % 1024 < n_envs:
                bar.update(done_steps - bar.n)
        bar.update(done_steps - bar.n)
    logger.remove(sink)
    logger.add(sys.stderr, level="WARNING")
    elapsed = time.perf_counter() - start
    ds = load_dataset(args.out)
    stats = ds.statistics()
    stats["seconds"] = round(elapsed, 3)
    stats["steps_per_second"] = round(done_steps / elapsed, 1) if elapsed else None
    if not args.json:
        print(f"recorded {args.env_id} into {args.out}")
    _print_stats(stats, args.json)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from gym_aquacollect import load_dataset

    ds = load_dataset(args.path)
    stats = ds.statistics()
    spec = getattr(ds, "env_spec", None)
    meta = getattr(ds, "metadata", None) or {}
    env_id = (getattr(spec, "id", None) or (meta.get("env_description") or {}).get("id")
              or meta.get("env_name") or meta.get("env_id"))
    if args.json:
        spec_json = None
        if spec is not None:
            try:
                spec_json = json.loads(spec.to_json())
            except (TypeError, ValueError):
                spec_json = repr(spec)
        out = {"path": str(args.path), "statistics": stats, "observation_space": repr(ds.observation_space),
               "action_space": repr(ds.action_space), "env": env_id, "env_spec": spec_json}
        print(json.dumps(out, indent=2, default=repr))
        return 0
    print(f"dataset {args.path}")
    print(f"  observation_space  {ds.observation_space}")
    print(f"  action_space       {ds.action_space}")
    print(f"  env                {env_id or 'not recorded in this dataset'}")
    _print_stats(stats, False)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from gym_aquacollect import load_dataset
    from gym_aquacollect.cli.report import write_report

    ds = load_dataset(args.path)
    out = write_report(ds, args.out, title=args.title, max_steps=args.max_steps, frames=args.frames)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB; self-contained, open it in a browser)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aquacollect",
        description="Record Gymnasium / Isaac Lab environments into crash-safe HDF5 datasets and inspect them.",
        epilog="Example: aquacollect record CartPole-v1 --steps 10000 --out data/cartpole && aquacollect info data/cartpole",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("record", help="record an env into a dataset and print its statistics",
                       description="Run ENV_ID for --steps steps (random policy unless --policy) and record it.")
    r.add_argument("env_id", nargs="?", default=DEFAULT_ENV,
                   help=f"a Gymnasium env id (default: {DEFAULT_ENV}); plugin envs as MODULE:ENV_ID "
                        "(e.g. ale_py:ALE/Pong-v5) or with --import MODULE")
    r.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import MODULE before gym.make, so the envs it registers exist (repeatable; "
                        "e.g. --import ale_py for ALE/Pong-v5)")
    r.add_argument("--steps", type=int, default=10_000, help="total env steps to record (default: 10000)")
    r.add_argument("--out", default="data/cartpole", help="dataset directory (default: data/cartpole)")
    r.add_argument("--num-envs", type=int, default=1, help="record a vector env of N sub-envs (gym.make_vec)")
    r.add_argument("--policy", help="module:callable mapping an observation to an action (default: random)")
    r.add_argument("--seed", type=int, default=0, help="reset seed (default: 0)")
    r.add_argument("--compression", default="auto", type=compression_arg, help="auto (default: lzf for large rows such as images), none, lzf, gzip or gzip:LEVEL")
    r.add_argument("--env-kwargs", help='JSON dict of gym.make keyword arguments, e.g. \'{"render_mode": null}\'')
    r.add_argument("--append", action="store_true", help="add to an existing dataset at --out")
    r.add_argument("--overwrite", action="store_true", help="delete an existing dataset at --out first")
    r.add_argument("--json", action="store_true", help="print statistics as JSON")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_record)

    i = sub.add_parser("info", help="print a dataset's statistics and spaces")
    i.add_argument("path", help="dataset directory (or a file an importer understands)")
    i.add_argument("--json", action="store_true", help="print as JSON")
    i.set_defaults(func=_cmd_info)

    rp = sub.add_parser("report", help="write a self-contained HTML report of a dataset",
                        description="One HTML page, no network needed: dataset card, returns and lengths over "
                                    "time, action histograms, observation ranges, frames, a sortable episode table.")
    rp.add_argument("path", help="dataset directory (or a file an importer understands)")
    rp.add_argument("--out", "-o", default="report.html", help="the HTML file to write (default: report.html)")
    rp.add_argument("--title", help="page title (default: the dataset directory's name)")
    rp.add_argument("--max-steps", type=int, default=200_000, help="steps read for the action/observation figures")
    rp.add_argument("--frames", type=int, default=8, help="frames per strip for image observations")
    rp.set_defaults(func=_cmd_report)

    from gym_aquacollect.cli.formats import add_subcommands  # export, validate, replay, plot

    add_subcommands(sub)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aquacollect`` command."""
    args = build_parser().parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, OSError, ValueError, KeyError) as e:
        print(f"aquacollect {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    # run the importable module's main: under `python -m`, optional subcommands register with it, not __main__
    from gym_aquacollect.cli.main import main as _main

    raise SystemExit(_main())
