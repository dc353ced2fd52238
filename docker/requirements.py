"""Print the requirements of one image variant, one a line, from pyproject.toml (run inside the image's build).

The Dockerfile installs these first and the project itself afterwards with ``--no-deps``, so the heavy layer
(TensorFlow) is rebuilt only when pyproject.toml changes, not on every code change.

- ``cpu``: the project's dependencies with ``tensorflow`` swapped for ``tensorflow-cpu`` of the same version: the
  same TensorFlow without its CUDA kernels, ~650 MB smaller installed (1.27 GB against 1.9 GB for 2.21).
- ``gpu``: the project's dependencies plus its ``gpu`` extra (``tensorflow[and-cuda]``: the CUDA libraries).
"""

import re
import sys
import tomllib
from pathlib import Path

_TENSORFLOW = re.compile(r"tensorflow(?=\s*(?:[=<>!~;]|$))")


def requirements(pyproject: dict, variant: str) -> list[str]:
    project = pyproject["project"]
    if variant == "cpu":
        return [_TENSORFLOW.sub("tensorflow-cpu", spec, count=1) for spec in project["dependencies"]]
    if variant == "gpu":
        return [*project["dependencies"], *project["optional-dependencies"]["gpu"]]
    raise ValueError(f"unknown variant {variant!r}: cpu or gpu")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: requirements.py PYPROJECT cpu|gpu", file=sys.stderr)
        return 2
    try:
        lines = requirements(tomllib.loads(Path(argv[1]).read_text()), argv[2])
    except (OSError, KeyError, ValueError) as exc:
        print(f"requirements.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
