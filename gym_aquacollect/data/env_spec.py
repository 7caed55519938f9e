"""The env a dataset was recorded from: its spec as data, and the env rebuilt without running the dataset's code.

Contents:
    * :func:`parse_env_spec` - a stored env spec (JSON string, dict or ``EnvSpec``) as a ``gymnasium`` ``EnvSpec``
      (or None); building it runs nothing.
    * :func:`recover_environment` - make the recorded env. By default it is built from the **local**
      Gymnasium registry by the recorded id, with the recorded ``kwargs`` and ``max_episode_steps``; the
      entry point stored in the dataset is never imported or called, and of the recorded
      ``additional_wrappers`` only Gymnasium's own (``gymnasium.wrappers``) are applied. Pass
      ``trust_env_spec=True`` to build exactly what the dataset names (its entry point and wrappers run:
      only for datasets whose source you trust).
    * :class:`UntrustedEnvSpecError` - what :func:`recover_environment` raises when the local registry
      cannot rebuild the env without trusting the dataset.

gym_aquacollect's own recording wrappers are always left out of a recovered env (rebuilding must not
record again).

Example:
    >>> spec = parse_env_spec('{"id": "CartPole-v1", "entry_point": "subprocess:getoutput",'
    ...                       ' "max_episode_steps": 30}')
    >>> spec.id, spec.entry_point
    ('CartPole-v1', 'subprocess:getoutput')
    >>> env = recover_environment(spec)   # the local CartPole-v1: the dataset's entry point never runs
    >>> type(env.unwrapped).__name__
    'CartPoleEnv'
    >>> env = recover_environment('{"id": "CartPole-v1", "kwargs": {"sutton_barto_reward": true},'
    ...                           ' "max_episode_steps": 30}')
    >>> type(env.unwrapped).__name__, env.spec.max_episode_steps, env.unwrapped._sutton_barto_reward
    ('CartPoleEnv', 30, True)
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, WrapperSpec

from gym_aquacollect.logs import logger

__all__ = ["parse_env_spec", "recover_environment", "UntrustedEnvSpecError", "SAFE_WRAPPER_MODULES"]

#: Modules whose wrappers a recovered env may apply from an untrusted spec (Gymnasium's own).
SAFE_WRAPPER_MODULES = ("gymnasium.wrappers",)
_OWN_PREFIX = "gym_aquacollect"
_FIELDS = {f.name for f in dataclasses.fields(EnvSpec) if f.init}


class UntrustedEnvSpecError(ValueError):
    """The recorded env cannot be rebuilt from the local registry alone; the message says what the
    dataset names and how to proceed (register the env locally, or ``trust_env_spec=True``)."""


def _wrapper(w: Any) -> WrapperSpec | None:
    if isinstance(w, WrapperSpec):
        return w
    if isinstance(w, dict) and isinstance(w.get("name"), str) and isinstance(w.get("entry_point"), str):
        kw = w.get("kwargs")
        return WrapperSpec(w["name"], w["entry_point"], kw if isinstance(kw, dict) else None)
    return None


def parse_env_spec(value: Any, *, source: str = "the dataset") -> EnvSpec | None:
    """``value`` (an ``EnvSpec``, its JSON or a dict) as an ``EnvSpec``; None when absent or unusable (logged).

    Nothing named in the spec is imported: an ``EnvSpec`` is plain data until ``gym.make`` uses it.

    Example:
        >>> parse_env_spec('{"id": "Pendulum-v1", "max_episode_steps": 200}').max_episode_steps
        200
        >>> parse_env_spec(None) is None
        True
    """
    if value is None or isinstance(value, EnvSpec):
        return value
    d = value
    if isinstance(value, (str, bytes)):
        try:
            d = json.loads(value)
        except (ValueError, RecursionError):
            logger.warning("gym_aquacollect: the env spec stored in {} is not valid JSON; env_spec is None", source)
            return None
    if not isinstance(d, dict) or not isinstance(d.get("id"), str):
        logger.warning("gym_aquacollect: the env spec stored in {} has no id; env_spec is None", source)
        return None
    kw = {k: v for k, v in d.items() if k in _FIELDS and k not in ("additional_wrappers", "namespace", "name", "version")}
    if not isinstance(kw.get("kwargs", {}), dict):
        kw["kwargs"] = {}
    if not isinstance(kw.get("entry_point"), (str, type(None))):
        kw["entry_point"] = None
    if not isinstance(kw.get("max_episode_steps"), (int, type(None))) or isinstance(kw.get("max_episode_steps"), bool):
        kw["max_episode_steps"] = None
    wrappers = d.get("additional_wrappers") or []
    kw["additional_wrappers"] = tuple(w for w in map(_wrapper, wrappers if isinstance(wrappers, list) else []) if w)
    try:
        return EnvSpec(**kw)
    except (TypeError, ValueError, gym.error.Error) as e:
        logger.warning("gym_aquacollect: the env spec stored in {} is unusable ({}); env_spec is None", source, e)
        return None


def _module(entry_point: Any) -> str:
    return entry_point.split(":", 1)[0] if isinstance(entry_point, str) else ""


def recover_environment(spec: Any, *, trust_env_spec: bool = False, **make_kwargs: Any) -> gym.Env:
    """Make the env described by ``spec`` (an ``EnvSpec``, its JSON or a dict), by default from the local registry.

    Args:
        spec: the recorded env spec (``ds.env_spec``).
        trust_env_spec: build exactly the recorded spec: its ``entry_point`` and ``additional_wrappers`` are
            imported and called. Only for datasets whose source you trust.
        make_kwargs: passed on to ``gym.make`` (e.g. ``render_mode="rgb_array"``); they override the
            recorded kwargs.

    Raises:
        UntrustedEnvSpecError: the recorded id is not registered here, or the spec names a wrapper from
            outside Gymnasium (and ``trust_env_spec`` is False).
        ValueError: the dataset records no env spec.
    """
    parsed = parse_env_spec(spec)
    if parsed is None:
        raise ValueError("the dataset records no usable env spec; make the env yourself (gym.make(ENV_ID))")
    wrappers = [w for w in parsed.additional_wrappers if not _module(w.entry_point).startswith(_OWN_PREFIX)]
    if trust_env_spec:
        return gym.make(dataclasses.replace(parsed, additional_wrappers=tuple(wrappers)), **make_kwargs)
    local = gym.registry.get(parsed.id)
    if local is None:
        raise UntrustedEnvSpecError(
            f"the dataset's env {parsed.id!r} is not registered in this Python, and its recorded entry point "
            f"{parsed.entry_point!r} is not run unless you trust the dataset: import the package that registers "
            f"{parsed.id!r} first, or pass trust_env_spec=True (CLI: --trust-env-spec) if you trust its source")
    foreign = [w for w in wrappers if not any(_module(w.entry_point) == m or _module(w.entry_point).startswith(m + ".")
                                              for m in SAFE_WRAPPER_MODULES)]
    if foreign:
        raise UntrustedEnvSpecError(
            f"the dataset's env {parsed.id!r} was recorded under wrapper(s) "
            f"{[w.entry_point for w in foreign]} from outside Gymnasium, which are not run unless you trust the "
            "dataset: pass trust_env_spec=True (CLI: --trust-env-spec) if you trust its source, or wrap "
            f"gym.make({parsed.id!r}) yourself")
    if local.entry_point != parsed.entry_point and parsed.entry_point is not None:
        logger.info("gym_aquacollect: rebuilding {!r} from the local registry ({}), not the recorded entry point {}",
                    parsed.id, local.entry_point, parsed.entry_point)
    merged = dataclasses.replace(
        local,
        kwargs={**(local.kwargs or {}), **(parsed.kwargs or {})},
        max_episode_steps=parsed.max_episode_steps,
        order_enforce=parsed.order_enforce,
        disable_env_checker=parsed.disable_env_checker,
        additional_wrappers=tuple(wrappers),
    )
    return gym.make(merged, **make_kwargs)
