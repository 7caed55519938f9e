"""The seed document's Quick Start, with only its imports changed, plus a look at what it recorded.

Run: ``python examples/seed_quickstart.py`` (writes ``./data/my_collector``).
"""

import numpy as np

from gym_aquacollect import load_dataset
from gym_aquacollect.collectors import RLCollector
from gym_aquacollect.collectors.units import GymnasiumWrapper

# ---- the seed's Quick Start, verbatim below this line ------------------------------------------------
# Create environment
env = GymnasiumWrapper("CartPole-v1")
env_info = env.getEnvInfo()

# Create collector
collector = RLCollector(
    name="my_collector",
    save_path="./data",
    max_buffer_size=100000,
    enable_trajectory_buffer=True
)

# Initialize with environment info
collector.initialize_configs(env_info)
collector.start_collection()

# Collect data
observation, info = env.reset()
for step in range(1000):  # noqa: B007 - the seed's code, verbatim
    action = {'action': np.random.randint(0, 2, size=(1, 1, 1))}
    next_observation, reward, done, truncated, info = env.step(action)

    collector.collect_step(
        observation=observation,
        action=action,
        reward=reward,
        next_observation=next_observation,
        done=done,
        truncated=truncated,
        info=info
    )

    observation = next_observation
    if done or truncated:
        observation, info = env.reset()

# End collection and save
collector.end_collection()
# ---- end of the seed's code ----------------------------------------------------------------------------

stats = collector.get_dataset_statistics()
print(f"Total steps: {stats['total_steps']}")
print(f"Total episodes: {stats['total_episodes']}")
print(f"Average episode length: {stats['avg_episode_length']}")
print(f"Average episode reward: {stats['avg_episode_reward']}")
ds = load_dataset(collector.dataset_path)
print(ds, ds[0].observations.shape, ds[0].actions[:10])
