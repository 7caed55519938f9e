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
    aquacollect export data/cam --format lerobot --out lerobot/cam --task "pick the cube" [--fps 30]
    aquacollect validate data/cartpole          # exit status 1 if anything is wrong
    aquacollect replay data/cartpole            # re-execute actions in the recorded env (determinism check)
    aquacollect plot data/cartpole --out returns.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands", "cmd_export", "cmd_validate", "cmd_replay", "cmd_plot", "main"]


def _load(path: str, args: argparse.Namespace) -> Any:
    from gym_aquacollect import load_dataset

    kw = {"allow_pickle": True} if getattr(args, "allow_pickle", False) else {}
    return load_dataset(path, **kw)


def success_predicate(args: argparse.Namespace) -> tuple[Any, str] | None:
    """The success test ``--only-successful`` keeps, and its description; None when not asked.

    ``--success-key KEY``: ``metadata[KEY]`` is true, else the episode's final info ``KEY`` is true;
    ``--success-final-reward X``: the last reward is >= X; ``--success-return X``: the return is >= X.
    Several are combined with "and". Without any, success is ``metadata["success"]`` or a final
    ``success`` / ``is_success`` info (unknown counts as not successful).
    """
    import numpy as np

    from gym_aquacollect.data.memory import episode_success

    key, final, ret = args.success_key, args.success_final_reward, args.success_return
    if not (args.only_successful or key or final is not None or ret is not None):
        return None
    tests, what = [], []
    if key:
        def by_key(ep: Any) -> bool:
            m = ep.metadata
            if key in m:
                return bool(m[key])
            v = ep.infos.get(key)
            if v is None:
                return False
            mask = ep.infos.get("_" + key)
            return bool(np.asarray(v)[-1]) and (mask is None or bool(np.asarray(mask)[-1]))
        tests.append(by_key)
        what.append(f"metadata or final info {key!r} is true")
    if final is not None:
        tests.append(lambda ep: len(ep) > 0 and float(np.asarray(ep.rewards)[-1]) >= final)
        what.append(f"final reward >= {final:g}")
    if ret is not None:
        tests.append(lambda ep: float(np.sum(ep.rewards)) >= ret)
        what.append(f"return >= {ret:g}")
    if not tests:
        tests.append(lambda ep: episode_success(ep) is True)
        what.append("metadata['success'] or a final 'success'/'is_success' info is true")
    return (lambda ep: all(t(ep) for t in tests)), " and ".join(what)


def cmd_export(args: argparse.Namespace) -> int:
    from gym_aquacollect.formats import backends, export

    ds = _load(args.path, args)
    success = success_predicate(args)
    if success is not None:
        pred, what = success
        n_all = len(ds)
        ds = ds.filter_episodes(pred)
        if not len(ds):
            print(f"error: no successful episodes to export: none of the {n_all} episodes has {what}. Define "
                  "success with --success-key KEY, --success-final-reward X or --success-return X.", file=sys.stderr)
            return 2
        print(f"keeping {len(ds)} of {n_all} episodes ({what})")
    kw: dict[str, Any] = {}
    if args.overwrite:
        kw["overwrite"] = True
    if args.format == "minari":
        from gym_aquacollect.formats.minari import _default_dataset_id

        kw["dataset_id"] = args.dataset_id or _default_dataset_id(ds)
        if args.no_jpeg:
            kw["jpeg_encoding"] = False
    elif args.format == "robomimic":
        kw["only_successful"] = False  # filtered above (success_predicate), with the command line's definition
        kw["actions"] = "teacher" if args.teacher_actions else "executed"
    elif args.format in ("npz", "pickle", "hdf5"):
        kw["include_metadata"] = not args.no_metadata
    elif args.format == "lerobot":
        kw.update({k: v for k, v in (("fps", args.fps), ("task", args.task), ("vcodec", args.vcodec),
                                     ("crf", args.crf), ("gop", args.gop)) if v is not None})
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
    from gym_aquacollect.data.validate import validate_dataset

    kw = {"allow_pickle": True} if args.allow_pickle else {}
    rep = validate_dataset(args.path, **kw)
    print(rep)
    return 0 if rep.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from gym_aquacollect.data.replay import ReplayEnv, replay_actions

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
    elif ds.env_spec is not None:
        from gym_aquacollect.data.env_spec import UntrustedEnvSpecError, recover_environment

        try:  # the local registry's env of the recorded id; the dataset's own code only with --trust-env-spec
            env = recover_environment(ds.env_spec, trust_env_spec=args.trust_env_spec)
        except UntrustedEnvSpecError as e:
            print(f"aquacollect replay: error: {e}; or pass --env ENV_ID", file=sys.stderr)
            return 2
        except (TypeError, ValueError, gym.error.Error) as e:
            print(f"aquacollect replay: error: cannot make the recorded env {ds.env_spec.id!r} with the dataset's "
                  f"kwargs {ds.env_spec.kwargs}: {type(e).__name__}: {e}; pass --env ENV_ID", file=sys.stderr)
            return 2
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

    from gym_aquacollect.cli.report import timeline

    ds = _load(args.path, args)
    # wall-clock order across writers (one learning curve for a multi-writer dataset); episodes cut by
    # close()/reset()/a crash are drawn apart and left out of the moving mean
    tl = timeline(ds)
    x, returns, lengths = tl["x"], tl["return"], tl["length"]
    cut = tl["interrupted"] != ""
    ok = ~cut
    fig, (a1, a2) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    a1.plot(x[ok], returns[ok], ".", alpha=0.5, label="episode return")
    if cut.any():
        a1.plot(x[cut], returns[cut], "x", color="tab:orange", label=f"interrupted ({int(cut.sum())})")
    if ok.sum() >= 5:
        w = max(2, int(ok.sum()) // 20)
        a1.plot(x[ok][w - 1:], np.convolve(returns[ok], np.ones(w) / w, mode="valid"), label=f"moving mean ({w})")
    a1.set_ylabel("return")
    a1.legend(loc="best")
    a2.plot(x[ok], lengths[ok], ".", alpha=0.5)
    if cut.any():
        a2.plot(x[cut], lengths[cut], "x", color="tab:orange")
    a2.set_ylabel("length (steps)")
    a2.set_xlabel(tl["x_label"])
    fig.suptitle(f"{Path(str(args.path)).name}: {int(ok.sum())} complete + {int(cut.sum())} interrupted episodes, "
                 f"{int(lengths.sum())} steps")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``export``, ``validate``, ``replay`` and ``plot`` to the main parser's subparsers."""
    p = subparsers.add_parser("export", help="export a dataset to minari, d4rl, robomimic, lerobot, npz, pickle or hdf5",
                              description="Export a dataset (any format load_dataset opens) to another format.")
    p.add_argument("path", help="dataset directory or file (also a Minari dataset id)")
    p.add_argument("--format", "-f", required=True,
                   help="minari | d4rl | robomimic | lerobot | npz | pickle | hdf5 | a plugin's name")
    p.add_argument("--out", "-o", default=None,
                   help="output file; for minari the Minari root directory (default: $MINARI_DATASETS_PATH "
                        "or ~/.minari/datasets)")
    p.add_argument("--dataset-id", help="minari: the dataset id, e.g. aquacollect/cartpole/random-v0")
    p.add_argument("--no-jpeg", action="store_true",
                   help="minari: store images raw (lossless; readable by minari >= 0.5.4 only)")
    p.add_argument("--only-successful", action="store_true",
                   help="keep only successful episodes (any format); success is metadata['success'] or a final "
                        "'success'/'is_success' info unless defined with the --success-* options")
    p.add_argument("--success-key", metavar="KEY",
                   help="success = metadata[KEY] (or the final info KEY) is true (implies --only-successful)")
    p.add_argument("--success-final-reward", type=float, metavar="X",
                   help="success = the episode's last reward >= X (implies --only-successful)")
    p.add_argument("--success-return", type=float, metavar="X",
                   help="success = the episode's return >= X (implies --only-successful)")
    p.add_argument("--teacher-actions", action="store_true",
                   help="robomimic: write the recorded teacher's actions as 'actions'")
    p.add_argument("--no-metadata", action="store_true", help="npz/pickle/hdf5: leave out metadata and infos")
    p.add_argument("--fps", type=float, help="lerobot: frames per second (default: the env's render_fps)")
    p.add_argument("--task", help="lerobot: the task text of every episode (default: episode metadata 'task')")
    p.add_argument("--vcodec", choices=["libsvtav1", "h264"], help="lerobot: video codec (default libsvtav1, AV1)")
    p.add_argument("--crf", type=int, help="lerobot: video quality, lower is better (default 30)")
    p.add_argument("--gop", type=int, help="lerobot: keyframe interval in frames (default 2)")
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
    p.add_argument("--trust-env-spec", action="store_true",
                   help="build the env exactly as the dataset's spec names it (runs its entry point and wrappers; "
                        "only for datasets you trust). Default: the local registry's env of the recorded id")
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
