"""Reading recorded data for training.

Contents:
    * :mod:`gym_aquacollect.data.transitions` - :class:`~gym_aquacollect.data.transitions.TransitionStore`:
      a dataset's steps as one flat stream of transitions, decoded columns cached within a memory budget,
      uniform sampling and chunk-order streaming with a shuffle buffer.
"""
