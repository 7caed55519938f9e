"""Bridges to training libraries.

Contents:
    * :mod:`gym_aquacollect.integrations.sb3` - :class:`~gym_aquacollect.integrations.sb3.CollectingVecEnv`, a
      Stable-Baselines3 ``VecEnvWrapper``.
    * :mod:`gym_aquacollect.integrations.torch` - ``Dataset.dataloader``: a ``torch.utils.data.DataLoader``
      of dict batches fetched a batch at a time (needs ``gym_aquacollect[torch]``).
"""
