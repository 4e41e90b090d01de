"""Shared fixtures of the example tests: the committed robot-intent checkpoints exported once.

``robot_exports`` exports both checkpoints (``examples/robot_intent/checkpoints``) to ONNX
fp32 and int8 with ``exporters.export`` (the code path of ``shadow-edge export``, parity gate
on) into one session folder, so the pipeline and grammar tests share them (they run in one
xdist group, hence one worker).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def robot_base_dir():
    from shadow_edge.assets import smollm2_hf_dir

    return smollm2_hf_dir()


@pytest.fixture(scope="session")
def robot_exports(tmp_path_factory, robot_base_dir) -> dict:
    """``{"generation-fp32": folder, "generation-int8": ..., "classification-fp32": ...,
    "classification-int8": ...}`` plus ``"manifests"``: ``{same keys: runtime.manifest.Manifest}``."""
    from examples.robot_intent.demo import export_all

    out = tmp_path_factory.mktemp("robot-intent-exports")
    done = export_all(("generation", "classification"), robot_base_dir, out)
    folders = {f"{task}-{precision}": folder for (task, precision), (folder, _, _) in done.items()}
    folders["manifests"] = {f"{task}-{precision}": manifest
                            for (task, precision), (_, _, manifest) in done.items()}
    return folders
