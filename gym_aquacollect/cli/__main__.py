"""``python -m gym_aquacollect.cli``."""

from gym_aquacollect.cli.main import main

raise SystemExit(main())
