"""The ``aquacollect`` subcommands for formats: ``export``, ``validate``, ``replay`` and ``plot``.

Contents:
    * :func:`add_subcommands` - add the four subcommands to the main CLI's ``argparse`` subparsers.
    * :func:`cmd_export`, :func:`cmd_validate`, :func:`cmd_replay`, :func:`cmd_plot` - their implementations
      (each takes the parsed ``argparse.Namespace`` and returns the exit status).
    * :func:`main` - run just these subcommands (``python -m gym_aquacollect.cli_formats ...``).

Examples::

    aquacollect export data/cartpole --format minari --out ~/minari-root --dataset-id aqua/cartpole/random-v0
    aquacollect export data/cartpole --format d4rl --out cartpole.hdf5
    aquacollect export data/pendulum --format robomimic --out demos.hdf5 --only-successful --teacher-actions
    aquacollect export data/cartpole --format npz --out cartpole.npz
    aquacollect validate data/cartpole          # exit status 1 if anything is wrong
    aquacollect replay data/cartpole            # re-execute actions in the recorded env (determinism check)
    aquacollect plot data/cartpole --out returns.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands", "cmd_export", "cmd_validate", "cmd_replay", "cmd_plot", "main"]


def _load(path: str, args: argparse.Namespace) -> Any:
    from gym_aquacollect import load_dataset

    kw = {"allow_pickle": True} if getattr(args, "allow_pickle", False) else {}
    return load_dataset(path, **kw)


def cmd_export(args: argparse.Namespace) -> int:
    from gym_aquacollect.formats import backends, export

    ds = _load(args.path, args)
    kw: dict[str, Any] = {}
    if args.overwrite:
        kw["overwrite"] = True
    if args.format == "minari":
        from gym_aquacollect.formats.minari import _default_dataset_id

        kw["dataset_id"] = args.dataset_id or _default_dataset_id(ds)
        if args.no_jpeg:
            kw["jpeg_encoding"] = False
    elif args.format == "robomimic":
        kw["only_successful"] = args.only_successful
        kw["actions"] = "teacher" if args.teacher_actions else "executed"
    elif args.format in ("npz", "pickle", "hdf5"):
        kw["include_metadata"] = not args.no_metadata
    if args.out is None and args.format != "minari":
        print(f"error: --out is required for --format {args.format}", file=sys.stderr)
        return 2
    if args.format not in backends():
        print(f"error: unknown format {args.format!r}; known: {', '.join(sorted(backends()))}", file=sys.stderr)
        return 2
    out = export(ds, args.out, args.format, **kw)
    print(f"exported {len(ds)} episodes ({ds.total_steps} steps) as {args.format} to {out}")
    if args.format == "minari":
        from gym_aquacollect.formats.minari import minari_root

        root = args.out or minari_root()
        print(f"open it with MINARI_DATASETS_PATH={root} and minari.load_dataset({kw['dataset_id']!r})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from gym_aquacollect.validate import validate_dataset

    kw = {"allow_pickle": True} if args.allow_pickle else {}
    rep = validate_dataset(args.path, **kw)
    print(rep)
    return 0 if rep.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from gym_aquacollect.replay import ReplayEnv, replay_actions

    ds = _load(args.path, args)
    episodes = range(min(args.episodes, len(ds))) if args.episodes else None
    if args.playback:
        env = ReplayEnv(ds)
        for i in episodes or range(len(ds)):
            env.reset(options={"episode": i})
            ret, n, done = 0.0, 0, False
            while not done:
                _, r, te, tr, _ = env.step(env.recorded_action)
                ret, n, done = ret + r, n + 1, te or tr
            print(f"episode {i}: {n} steps, return {ret:.4g}")
        return 0
    if args.env:
        env = gym.make(args.env)
    elif ds.env_spec:
        from gymnasium.envs.registration import EnvSpec

        from gym_aquacollect.formats.minari import clean_env_spec

        spec = clean_env_spec(ds.env_spec if isinstance(ds.env_spec, str) else json.dumps(ds.env_spec))
        if spec is None:
            print("error: the stored env spec cannot be rebuilt; pass --env ENV_ID", file=sys.stderr)
            return 2
        env = gym.make(EnvSpec.from_json(spec))
    else:
        print("error: the dataset has no env spec; pass --env ENV_ID (or --playback)", file=sys.stderr)
        return 2
    with env:
        report = replay_actions(ds, env, episodes=episodes, atol=args.atol)
    print(report)
    return 0 if report.ok else 1


def cmd_plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: plotting needs matplotlib: pip install 'gym_aquacollect[plot]'", file=sys.stderr)
        return 2
    import numpy as np

    ds = _load(args.path, args)
    if hasattr(ds, "episode_returns"):
        returns, lengths = np.asarray(ds.episode_returns), np.asarray(ds.episode_lengths)
    else:
        eps = list(ds.iterate_episodes())
        returns = np.asarray([float(np.sum(e.rewards)) for e in eps])
        lengths = np.asarray([len(e) for e in eps])
    x = np.arange(len(returns))
    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    a1.plot(x, returns, ".", alpha=0.5, label="episode return")
    if len(returns) >= 5:
        w = max(2, len(returns) // 20)
        a1.plot(x[w - 1:], np.convolve(returns, np.ones(w) / w, mode="valid"), label=f"moving mean ({w})")
    a1.set_ylabel("return")
    a1.legend(loc="best")
    a2.plot(x, lengths, ".", alpha=0.5)
    a2.set_ylabel("length (steps)")
    a2.set_xlabel("episode (dataset order: as they finished, per writer)")
    fig.suptitle(f"{Path(str(args.path)).name}: {len(returns)} episodes, {int(lengths.sum())} steps")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``export``, ``validate``, ``replay`` and ``plot`` to the main parser's subparsers."""
    p = subparsers.add_parser("export", help="export a dataset to minari, d4rl, robomimic, npz, pickle or hdf5",
                              description="Export a dataset (any format load_dataset opens) to another format.")
    p.add_argument("path", help="dataset directory or file (also a Minari dataset id)")
    p.add_argument("--format", "-f", required=True,
                   help="minari | d4rl | robomimic | npz | pickle | hdf5 | a plugin's name")
    p.add_argument("--out", "-o", default=None,
                   help="output file; for minari the Minari root directory (default: $MINARI_DATASETS_PATH "
                        "or ~/.minari/datasets)")
    p.add_argument("--dataset-id", help="minari: the dataset id, e.g. aquacollect/cartpole/random-v0")
    p.add_argument("--no-jpeg", action="store_true",
                   help="minari: store images raw (lossless; readable by minari >= 0.5.4 only)")
    p.add_argument("--only-successful", action="store_true", help="robomimic: keep only successful episodes")
    p.add_argument("--teacher-actions", action="store_true",
                   help="robomimic: write the recorded teacher's actions as 'actions'")
    p.add_argument("--no-metadata", action="store_true", help="npz/pickle/hdf5: leave out metadata and infos")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--allow-pickle", action="store_true", help="allow reading a pickle input (runs its code)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("validate", help="check a dataset's structure and stored checksums",
                              description="Check a dataset: shard sizes and CRC32 checksums against the "
                                          "manifests, then every episode's rows and end flags. Exit status 1 "
                                          "if anything is wrong.")
    p.add_argument("path")
    p.add_argument("--allow-pickle", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("replay", help="re-execute recorded actions in the recorded env (determinism check)",
                              description="Reset the env with each episode's recorded seed and options, step "
                                          "the recorded actions and report divergence (exit status 1). With "
                                          "--playback, play the episodes through ReplayEnv instead.")
    p.add_argument("path")
    p.add_argument("--env", help="env id to replay in (default: the env spec stored in the dataset)")
    p.add_argument("--episodes", type=int, default=0, help="only the first N episodes")
    p.add_argument("--atol", type=float, default=1e-6, help="tolerance for observations and rewards")
    p.add_argument("--playback", action="store_true", help="play back through ReplayEnv and print returns")
    p.add_argument("--allow-pickle", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("plot", help="plot episode return and length over time (needs matplotlib)")
    p.add_argument("path")
    p.add_argument("--out", "-o", default="returns.png")
    p.add_argument("--dpi", type=int, default=100)
    p.add_argument("--allow-pickle", action="store_true")
    p.set_defaults(func=cmd_plot)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aquacollect")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
