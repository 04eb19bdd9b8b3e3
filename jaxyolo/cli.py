"""``jaxyolo`` command line (Ultralytics-style ``jaxyolo [TASK] MODE key=value ...``)."""

from __future__ import annotations

import sys

import jaxyolo

HELP = """jaxyolo {version}: Ultralytics YOLO image classification in JAX/Flax.

    jaxyolo version          print the version
    jaxyolo help             this message

The train/val/predict/export modes are being built (see the project's issues)."""


def entrypoint(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("help", "-h", "--help"):
        print(HELP.format(version=jaxyolo.__version__))
        return 0
    if args[0] == "version":
        print(jaxyolo.__version__)
        return 0
    print(f"jaxyolo: '{' '.join(args)}' is not available yet; try 'jaxyolo help'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(entrypoint())
