"""Check that every package installed in this environment is pinned by a constraints file.

Usage: python .ci/check_constraints.py .ci/constraints.txt [--strict]

`make install` installs with ``-c .ci/constraints.txt``, so a pinned package can only be installed at its
pin; a package the file does not name (a dependency added since ``make constraints`` last ran) is
installed at whatever version resolves today. This lists those; with ``--strict`` (CI) they fail the run.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

# torch's CUDA runtime wheels: present only where torch resolved to its CUDA build (no CPU wheel on the
# index, see README, Development); the pins come from torch's own exact requirements.
TORCH_RUNTIME = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> int:
    path, strict = argv[0], "--strict" in argv[1:]
    pinned = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pinned[_norm(name)] = version.split(";")[0].strip()
    unpinned, differ = [], []
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or _norm(name) == "gym-aquacollect" or TORCH_RUNTIME.match(_norm(name)):
            continue
        want = pinned.get(_norm(name))
        if want is None:
            unpinned.append(f"{name}=={dist.version}")
        elif dist.version.split("+")[0] != want.split("+")[0]:
            differ.append(f"{name} {dist.version} (pinned {want})")
    if not unpinned and not differ:
        print(f"constraints: all installed packages pinned by {path}")
        return 0
    print(f"constraints: {path} is out of date: not pinned: {', '.join(sorted(unpinned)) or '-'}; "
          f"other version than pinned: {', '.join(sorted(differ)) or '-'}. Run `make constraints` and commit {path}.")
    return 1 if strict else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
