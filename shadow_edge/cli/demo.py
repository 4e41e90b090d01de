"""``shadow-edge demo``: the robot-intent main job (``examples/robot_intent/demo.py``).

The demo lives in the source tree, not in the wheel, so this command needs a checkout
(``git clone`` + ``make setup``). Extra arguments are passed to the demo's ``main(argv)``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from shadow_edge.errors import ShadowEdgeError

DEMO_MODULE = "examples.robot_intent.demo"


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def load_demo_main():
    """The demo's ``main(argv)``; ``ShadowEdgeError`` when the examples are not present."""
    root = _repo_root()
    demo_file = root / "examples" / "robot_intent" / "demo.py"
    if not demo_file.is_file():
        raise ShadowEdgeError(
            f"the robot-intent demo is not installed ({demo_file} is missing); it ships with "
            "the source tree. Run it from a checkout: git clone ... && make demo."
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(DEMO_MODULE).main


def demo_command(ctx: typer.Context) -> None:
    """Run the robot-intent demo (export + evaluate).

    Exports the committed checkpoints to int8 and evaluates them on held-out commands.

    Arguments after '--' go to the demo unchanged ('shadow-edge demo -- --help' lists them).
    """
    code = load_demo_main()(list(ctx.args))
    if code:
        raise typer.Exit(int(code))
