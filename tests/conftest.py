"""Shared fixtures: tiny models built from configs (random weights, no downloads).

Why one thread: the suite runs under pytest-xdist on 2 cores; one torch thread per worker
avoids oversubscription.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

try:  # the runtime tests run without torch in a subprocess; torch is optional here
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - base install
    torch = None

from tests.tiny_models import ARCHITECTURES, tiny_config


@pytest.fixture(params=ARCHITECTURES)
def arch(request) -> str:
    """Each supported decoder architecture name, e.g. "llama"."""
    return request.param


@pytest.fixture
def tiny_cfg(arch):
    return tiny_config(arch)
