"""The seed document's data units: :class:`UnitConfig`, unit-config ``env_info`` and dict-of-units values.

Contents:
    * :class:`UnitConfig` - ``UnitConfig(name, dtype, single_shape, size)``, one named data unit.
    * :func:`coerce_unit` - a :class:`UnitConfig` from a UnitConfig, a plain dict or a Gymnasium space.
    * :func:`space_from_units` - a ``Dict`` space (one ``Box`` per unit) from ``{name: unit}``.
    * :func:`spaces_from_env_info` - ``(observation_space, action_space)`` from an ``env_info`` that
      carries ``observation_space``/``action_space`` or the seed's ``observation_cfg``/``action_cfg``.
    * :func:`make_adapter` / :func:`scalar` - turn seed-style values (``{'action': array(1, 1, 1)}``,
      ``{'reward': array(1, 1, 1)}``, ``done`` as ``array([[True]])``) into values of a space.
    * :class:`GymnasiumWrapper` - the seed's ``GymnasiumWrapper("CartPole-v1")`` env adapter speaking
      dict-of-units (``getEnvInfo()``, ``reset()``, ``step({'action': ...})``), so the seed's Quick Start
      runs with only its imports changed.

Dict-of-units values. The seed passes every value as a dict of named units whose arrays carry leading
``(num_machines, num_envs)`` axes, e.g. ``{'action': np.random.randint(0, 2, size=(1, 1, 1))}`` for a
``Discrete(2)`` action. :meth:`BaseCollector.collect_step` accepts these: a one-key dict around a
non-Dict space is unwrapped, leading axes of length 1 are dropped when the shape then matches the
space, a one-element integer array becomes the ``Discrete`` integer, integer arrays for a float unit
are cast, and ``reward``/``done``/``truncated`` may be one-element arrays or one-key dicts. Anything
else is rejected with an error naming the unit, its expected shape/dtype and what was given.

Example:
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> obs_space, act_space = spaces_from_env_info({
    ...     "observation_cfg": {"state": UnitConfig("state", np.float32, (4,), 10_000)},
    ...     "action_cfg": {"action": {"name": "action", "dtype": "float32", "single_shape": (2,)}},
    ... })
    >>> obs_space["state"].shape, act_space["action"].dtype
    ((4,), dtype('float32'))
    >>> adapt = make_adapter(spaces.Discrete(2), "action")
    >>> adapt({"action": np.ones((1, 1, 1), dtype=np.int64)})
    1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "UnitConfig",
    "coerce_unit",
    "space_from_units",
    "spaces_from_env_info",
    "make_adapter",
    "scalar",
    "GymnasiumWrapper",
]


def _as_dtype(dtype: Any) -> np.dtype:
    """NumPy dtype from a NumPy dtype/type, a string (``"float32"``) or a torch dtype."""
    if dtype is None:
        return np.dtype(np.float32)
    if type(dtype).__module__.startswith("torch"):
        dtype = str(dtype).rsplit(".", 1)[-1]
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unit dtype {dtype!r} is not a NumPy/torch dtype or dtype name (e.g. 'float32')") from None


@dataclass(frozen=True)
class UnitConfig:
    """One named data unit of the seed API: ``UnitConfig(name, dtype, single_shape, size)``.

    Args:
        name: the unit's name (becomes the key of the Dict space and the column name).
        dtype: NumPy dtype, dtype name (``"float32"``) or torch dtype.
        single_shape: the shape of one value (no batch axes).
        size: the seed's buffer capacity for this unit; recorded, not used for storage (datasets on
            disk are unbounded; :class:`~gym_aquacollect.collectors.BufferCollector` uses
            ``max_buffer_size``).

    Example:
        >>> import numpy as np
        >>> u = UnitConfig(name="state", dtype=np.float32, single_shape=(4,), size=10000)
        >>> u.space()
        Box(-inf, inf, (4,), float32)
    """

    name: str
    dtype: Any = np.float32
    single_shape: tuple[int, ...] = ()
    size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _as_dtype(self.dtype))
        shape = self.single_shape
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"unit {self.name!r}: single_shape must be a tuple of ints, got {self.single_shape!r}") from None
        if any(s < 0 for s in shape):
            raise ValueError(f"unit {self.name!r}: single_shape {shape} has a negative dimension")
        object.__setattr__(self, "single_shape", shape)

    def space(self) -> spaces.Box:
        """The Gymnasium space of one value: an unbounded ``Box`` (bool units: ``Box(0, 1)``)."""
        if self.dtype.kind == "b":
            return spaces.Box(0, 1, self.single_shape, dtype=np.bool_)
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            return spaces.Box(info.min, info.max, self.single_shape, dtype=self.dtype)
        return spaces.Box(-np.inf, np.inf, self.single_shape, dtype=self.dtype)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dtype"] = str(self.dtype)
        d["single_shape"] = list(self.single_shape)
        return d


def coerce_unit(name: str, unit: Any) -> UnitConfig:
    """A :class:`UnitConfig` from a UnitConfig, a plain dict of its fields, an object with those
    attributes (AquaML's ``unitCfg``) or a Gymnasium ``Box``."""
    if isinstance(unit, UnitConfig):
        return unit
    if isinstance(unit, spaces.Box):
        return UnitConfig(name, unit.dtype, unit.shape)
    if isinstance(unit, Mapping):
        unknown = set(unit) - {"name", "dtype", "single_shape", "size", "shape"}
        if unknown:
            raise KeyError(f"unit {name!r}: unknown field(s) {sorted(unknown)}; a unit has name, dtype, "
                           "single_shape and size")
        shape = unit.get("single_shape", unit.get("shape"))
        if shape is None:
            raise KeyError(f"unit {name!r}: missing 'single_shape' (the shape of one value, e.g. (4,))")
        return UnitConfig(unit.get("name", name), unit.get("dtype", np.float32), shape, unit.get("size"))
    if hasattr(unit, "single_shape"):
        return UnitConfig(getattr(unit, "name", name), getattr(unit, "dtype", np.float32), unit.single_shape,
                          getattr(unit, "size", None))
    raise TypeError(f"unit {name!r}: expected a UnitConfig, a dict with name/dtype/single_shape/size or a Box, "
                    f"got {type(unit).__name__}")


def space_from_units(units: Mapping[str, Any] | spaces.Space, label: str = "observation_cfg") -> spaces.Space:
    """A ``Dict`` space with one ``Box`` per unit (a Gymnasium space is returned unchanged)."""
    if isinstance(units, spaces.Space):
        return units
    if not isinstance(units, Mapping) or not units:
        raise TypeError(f"{label} must be a non-empty dict of units {{name: UnitConfig | dict}}, got {units!r:.80}")
    return spaces.Dict({str(k): coerce_unit(str(k), u).space() for k, u in units.items()})


def spaces_from_env_info(info: Mapping[str, Any]) -> tuple[spaces.Space, spaces.Space]:
    """``(observation_space, action_space)`` from an ``env_info``.

    Gymnasium spaces (``observation_space``/``action_space``, as :func:`gym_aquacollect.env_info` returns)
    win over unit configs (``observation_cfg``/``action_cfg``, the seed's Isaac Lab example).
    """
    found = []
    for space_key, cfg_key in (("observation_space", "observation_cfg"), ("action_space", "action_cfg")):
        if info.get(space_key) is not None:
            found.append(info[space_key])
        elif info.get(cfg_key) is not None:
            found.append(space_from_units(info[cfg_key], cfg_key))
        else:
            raise KeyError(
                f"env_info lacks {space_key!r} (or the seed's {cfg_key!r}): pass gym_aquacollect.env_info(env), "
                f"or a dict with '{space_key}' (a gymnasium space) or '{cfg_key}' ({{name: UnitConfig}}); "
                f"got keys {sorted(map(str, info))}"
            )
    return found[0], found[1]


def scalar(value: Any, what: str) -> Any:
    """A Python/NumPy scalar from a scalar, a one-element array/tensor or a one-key dict of those."""
    if isinstance(value, (bool, int, float, np.generic)):
        return value
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"{what}: a dict of units must have exactly one unit here, got keys {sorted(value)}")
        value = next(iter(value.values()))
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"{what}: expected one value for a single env, got an array of shape {arr.shape}")
    return arr.reshape(()).item()


def _strip(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Drop leading axes of length 1 (the seed's ``(num_machines, num_envs)``) until ``shape`` matches."""
    while arr.shape != shape and arr.ndim > len(shape) and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape and arr.size == int(np.prod(shape, dtype=np.int64)) and arr.ndim > len(shape):
        arr = arr.reshape(shape)
    return arr


def make_adapter(space: spaces.Space, label: str) -> Callable[[Any], Any]:
    """``adapt(value)``: a seed-style value (dict of units, leading batch axes, tensor) as a value of
    ``space``; values already in the space's form pass through unchanged (validation stays with the
    collector's codec, which names the offending key, shape and dtype)."""
    if isinstance(space, spaces.Dict):
        subs = {k: make_adapter(s, f"{label}[{k!r}]") for k, s in space.spaces.items()}
        only = next(iter(subs)) if len(subs) == 1 else None

        def adapt_dict(v: Any) -> Any:
            if not isinstance(v, Mapping):
                if only is not None:  # a bare value for a one-unit Dict
                    return {only: subs[only](v)}
                return v
            return {k: subs[k](x) if k in subs else x for k, x in v.items()}

        return adapt_dict
    if isinstance(space, spaces.Tuple):
        subs_t = [make_adapter(s, f"{label}[{i}]") for i, s in enumerate(space.spaces)]

        def adapt_tuple(v: Any) -> Any:
            if isinstance(v, (tuple, list)) and len(v) == len(subs_t):
                return tuple(a(x) for a, x in zip(subs_t, v))
            return v

        return adapt_tuple

    def unwrap(v: Any) -> Any:
        if isinstance(v, Mapping):
            if len(v) != 1:
                raise ValueError(
                    f"{label}: got a dict with units {sorted(v)} for the non-Dict space {space}; pass a single "
                    "unit ({'action': value}) or configure a Dict space / several units"
                )
            v = next(iter(v.values()))
        if hasattr(v, "detach") and hasattr(v, "cpu"):
            v = v.detach().cpu().numpy()
        return v

    if isinstance(space, spaces.Discrete):

        def adapt_discrete(v: Any) -> Any:
            if type(v) is int:
                return v
            v = unwrap(v)
            if isinstance(v, np.ndarray) and v.size == 1:
                x = v.reshape(())
                if x.dtype.kind in "iu":
                    return int(x)
                if x.dtype.kind == "f" and float(x).is_integer():
                    return int(x)
            return v

        return adapt_discrete
    if isinstance(space, spaces.Text):
        return unwrap
    shape, dtype = tuple(space.shape), np.dtype(space.dtype)

    def adapt_array(v: Any) -> Any:
        if type(v) is np.ndarray and v.shape == shape and v.dtype == dtype:
            return v
        v = unwrap(v)
        if isinstance(v, np.ndarray) or isinstance(v, (list, tuple)):
            arr = _strip(np.asarray(v), shape)
            if arr.dtype != dtype and arr.dtype.kind in "iub" and dtype.kind in "iuf":
                cast = arr.astype(dtype)
                if np.array_equal(cast, arr):  # only lossless casts (int action for a float unit)
                    arr = cast
            return arr
        return v

    return adapt_array


class GymnasiumWrapper:
    """The seed's dict-of-units env adapter: ``GymnasiumWrapper("CartPole-v1")``.

    Observations come back as ``{'state': array(1, 1, *shape)}``, rewards as ``{'reward': array(1, 1, 1)}``
    and ``terminated``/``truncated`` as ``array(1, 1)``; ``step`` takes ``{'action': array}``.
    ``getEnvInfo()`` returns both the Gymnasium spaces (so datasets keep the env's real spaces and
    spec) and the seed's unit configs. Unlike the seed's wrapper it does not reset by itself on
    ``done``: the observation ``step`` returns is the real final observation (the seed's loop resets).

    Example:
        >>> import numpy as np
        >>> env = GymnasiumWrapper("CartPole-v1")
        >>> obs, info = env.reset(seed=0)
        >>> obs["state"].shape
        (1, 1, 4)
        >>> nxt, reward, done, truncated, info = env.step({"action": np.zeros((1, 1, 1), dtype=np.int64)})
        >>> reward["reward"].shape, done.shape
        ((1, 1, 1), (1, 1))

    Args:
        env: a Gymnasium env or an env id for ``gym.make``.
        **make_kwargs: passed to ``gym.make`` when ``env`` is an id.
    """

    def __init__(self, env: gym.Env | str, **make_kwargs: Any) -> None:
        self.env = gym.make(env, **make_kwargs) if isinstance(env, str) else env
        self.num_envs = 1
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self._adapt = make_adapter(self.action_space, "action")

    @staticmethod
    def _unit_shape(space: spaces.Space) -> tuple[int, ...]:
        if isinstance(space, spaces.Discrete):
            return (1,)
        return tuple(space.shape or (1,))

    def getEnvInfo(self) -> dict[str, Any]:  # noqa: N802 - the seed's name
        """``env_info`` for :meth:`BaseCollector.initialize_configs` (spaces and the seed's unit configs)."""
        from gym_aquacollect.collectors.base import env_info

        info = env_info(self.env)
        info["observation_cfg"] = {"state": UnitConfig("state", np.float32, self._unit_shape(self.observation_space))}
        info["action_cfg"] = {"action": UnitConfig("action", np.float32, self._unit_shape(self.action_space))}
        info["reward_cfg"] = {"reward": UnitConfig("reward", np.float64, (1,))}
        info["num_envs"] = 1
        return info

    get_env_info = getEnvInfo

    def _obs(self, obs: Any) -> dict[str, Any]:
        if isinstance(obs, np.ndarray):
            return {"state": obs[None, None]}
        return {"state": obs}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), info

    def step(self, action: Any) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.env.step(self._adapt(action))
        return (self._obs(obs), {"reward": np.full((1, 1, 1), reward, dtype=np.float64)},
                np.full((1, 1), terminated), np.full((1, 1), truncated), info)

    def close(self) -> None:
        self.env.close()
