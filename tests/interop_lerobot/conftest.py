# lerobot_side.py runs inside the lerobot venv only (it imports lerobot): never collect or doctest it here.
collect_ignore = ["lerobot_side.py"]
