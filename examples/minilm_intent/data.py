"""Read the robot-intent classification splits (``examples/robot_intent/data``).

The files are written by ``python -m examples.robot_intent.data``: ``{split}.classification.jsonl``
(one ``{"text": ..., "label": id}`` per line) and ``labels.json`` (``{"labels": [names by
id]}``). This module only reads them, so the example runs on whatever split the robot-intent
example last committed.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "robot_intent" / "data"
SPLITS = ("train", "validation", "test")
#: Rare intents are repeated up to this many training rows per epoch (as in the SmolLM2
#: classifier's training), so a 1-template intent is not drowned by 300-row ones.
MIN_PER_INTENT = 48


@dataclass(frozen=True)
class Example:
    text: str
    label: int


def read_labels(folder: Path = DATA_DIR) -> list[str]:
    """Intent names by label id."""
    return list(json.loads((folder / "labels.json").read_text(encoding="utf-8"))["labels"])


def read_split(split: str, folder: Path = DATA_DIR) -> list[Example]:
    """The examples of one split, in file order.

    Raises:
        ValueError: an unknown split name. FileNotFoundError: the data was not generated.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    path = folder / f"{split}.classification.jsonl"
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [Example(text=row["text"], label=int(row["label"])) for row in rows]


def oversampled(examples: list[Example], minimum: int = MIN_PER_INTENT, seed: int = 0) -> list[Example]:
    """``examples`` plus repeats of the intents with fewer than ``minimum`` rows (seeded)."""
    counts = Counter(e.label for e in examples)
    rng = random.Random(seed)
    extra = []
    for label, count in sorted(counts.items()):
        if count < minimum:
            rows = [e for e in examples if e.label == label]
            extra += [rng.choice(rows) for _ in range(minimum - count)]
    return examples + extra


def fixed_sample(examples: list[Example], n: int | None, seed: int = 0) -> list[Example]:
    """A seeded random sample of ``n`` examples (all of them when ``n`` is None or larger)."""
    if n is None or n >= len(examples):
        return list(examples)
    return random.Random(seed).sample(list(examples), n)
