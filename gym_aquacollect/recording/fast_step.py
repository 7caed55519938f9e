"""The per-step function generated for one collector's spaces: the single-env hot path.

Contents:
    * :func:`make_fast_step` - builds ``record_step(action, observation, reward, terminated, truncated,
      info=None, extras=None)`` (or a wrapper's whole ``step(action)``) for a
      :class:`~gym_aquacollect.recording.row.RowRecorder`, with the space's checks written into its body.

Why generated: on a 2-core machine a CartPole step costs ~6 us, and a Python call costs about as much as
all of a step's checks together, so the checks and stores are written out in one function per space
(:data:`FAST_STEP` with the action check filled in) instead of calling a validator per leaf. A step whose
values already have the space's exact types (one Box / MultiBinary / MultiDiscrete observation of the
space's dtype and shape, a Discrete or array action, float reward, bool flags) is a few identity and shape
comparisons and five stores; anything else (other types or dtypes, a full block, an episode not being
recorded, extras, a failed writer) goes to the general ``RowRecorder.record_step``, which validates in full
and raises the same errors. Small observation rows are stored from ``obs.tobytes()`` into a raw-bytes
(``V<n>``) view of their column, half the cost of a NumPy row assignment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces as sp

__all__ = ["make_fast_step", "FAST_STEP"]

#: The body of the specialised per-step function (:func:`make_fast_step`): the checks a step
#: must pass to be stored without the general path (``{action_ok}``: this space's action check), then the
#: stores. Everything else (other types, a full block, a failed writer) goes to the general path, which
#: validates in full and raises the same errors.
FAST_STEP = """\
    tr, tt, tu = type(reward), type(terminated), type(truncated)
    i, j = s._ns, s._no
    if ({action_ok}
            and type(observation) is nd and observation.dtype is odt and observation.shape == osh
            and (tr is float or tr is f64) and (tt is bool or tt is b_) and (tu is bool or tu is b_)
            and s._fast and j != s._cap and not ws.failed and not s.step_callbacks):
        s._acol[i] = action
        s._ocol[j] = {obs_row}
        s._rew[i] = reward
        s._term[i] = terminated
        s._trunc[i] = truncated
        if info and s.record_infos:
            s._infos.put(j, info)
        s._ns, s._no = i + 1, j + 1
        if terminated or truncated:
            s._finish_episode(bool(terminated), bool(truncated))
        elif not i & 255:
            if ws.busy:
                ws.let_run()
            if monotonic() - s._last_handoff > s._handoff_every:
                s._handoff()
    else:
        general(action, observation, reward, terminated, truncated, info)
    return {ret}
"""



def make_fast_step(rec: Any, general: Callable[..., None], env_step: Callable[[Any], tuple] | None = None
                   ) -> Callable[..., Any] | None:
    """The specialised ``record_step`` of recorder ``rec`` (``general`` is its full path), or with
    ``env_step`` a wrapper's whole ``step(action)``: it steps the env, records the step and returns what
    the env returned (one Python frame per step instead of two). None where these spaces have no
    specialised path (nested spaces, Text, a Discrete observation, ``check_bounds``)."""
    oc, ac = rec._obs_codec, rec._act_codec
    if rec.check_bounds or not (oc.simple and ac.simple):
        return None
    ol, al = oc.leaves[0], ac.leaves[0]
    if ol.is_text or al.is_text or isinstance(ol.space, sp.Discrete):
        return None
    if isinstance(al.space, sp.Discrete):
        lo, hi = int(al.space.start), int(al.space.start) + int(al.space.n)
        action_ok = "(type(action) is int or type(action) is i64 or type(action) is i32) and lo <= action < hi"
    else:
        lo = hi = 0
        action_ok = "type(action) is nd and action.dtype is adt and action.shape == ash"
    if env_step is None:
        head = ("def record_step(action, observation, reward, terminated, truncated, info=None, extras=None):\n"
                "    if extras or not s._fast:\n"
                "        return general(action, observation, reward, terminated, truncated, info, extras)\n")
    else:
        head = ("def step(action):\n"
                "    out = env_step(action)\n"
                "    observation, reward, terminated, truncated, info = out\n")
    src = head + FAST_STEP.format(action_ok=action_ok,
                                  obs_row="observation.tobytes()" if rec._packed_obs else "observation",
                                  ret="out" if env_step is not None else "None")
    scope = {"s": rec, "ws": rec._wstate, "general": general, "env_step": env_step, "nd": np.ndarray,
             "f64": np.float64, "b_": np.bool_, "i64": np.int64, "i32": np.int32, "odt": ol.dtype, "osh": ol.shape,
             "adt": al.dtype, "ash": al.shape, "lo": lo, "hi": hi, "monotonic": time.monotonic}
    exec(compile(src, f"<gym_aquacollect fast step for {oc.space} / {ac.space}>", "exec"), scope)  # noqa: S102
    return scope["step" if env_step is not None else "record_step"]
