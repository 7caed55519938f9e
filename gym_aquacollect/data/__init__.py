"""Reading-side helpers shared by gym_aquacollect's own datasets and the imported formats.

Contents:
    * :mod:`gym_aquacollect.data.env_spec` - a dataset's recorded env spec as a Gymnasium ``EnvSpec``, and
      :func:`~gym_aquacollect.data.env_spec.recover_environment`, which rebuilds the env from the local registry.
    * :mod:`gym_aquacollect.data.transitions` - :class:`~gym_aquacollect.data.transitions.TransitionStore`:
      a dataset's steps as one flat stream of transitions, decoded columns cached within a memory budget,
      uniform sampling and chunk-order streaming with a shuffle buffer.
"""
