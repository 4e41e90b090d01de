"""Parameter counts and PEFT's "Trainable params" summary line."""

from __future__ import annotations

import sys
from typing import TextIO

from torch import nn


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``module`` (shared parameters counted once)."""
    trainable = total = 0
    for parameter in module.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def write_parameter_summary(module: nn.Module, file: TextIO | None) -> str:
    """Write ``Trainable params: N || Total params: M || Trainable%: P`` to ``file``
    (default ``sys.stdout``, as PEFT's ``print_trainable_parameters``); return the line."""
    trainable, total = count_parameters(module)
    percent = 100.0 * trainable / total if total else 0.0
    line = f"Trainable params: {trainable:,} || Total params: {total:,} || Trainable%: {percent:.4f}%"
    (file or sys.stdout).write(line + "\n")
    return line
