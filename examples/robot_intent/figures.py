"""Pictures of the results: a confusion matrix of intents (matplotlib, PNG)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def confusion_counts(gold: list[str], pred: list[str], labels: list[str]) -> list[list[int]]:
    """``counts[i][j]``: commands of gold label ``labels[i]`` predicted as ``labels[j]``; a
    prediction outside ``labels`` (not a real intent) counts in an extra last column."""
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * (len(labels) + 1) for _ in labels]
    for (g, p), n in Counter(zip(gold, pred, strict=True)).items():
        if g in index:
            counts[index[g]][index.get(p, len(labels))] += n
    return counts


def confusion_png(gold: list[str], pred: list[str], labels: list[str], path: Path, *,
                  title: str) -> Path:
    """Write a row-normalised confusion matrix (rows: gold intent) to ``path`` (PNG).

    Raises:
        ModuleNotFoundError: matplotlib is not installed (``pip install matplotlib``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion_counts(gold, pred, labels)
    rates = [[c / max(1, sum(row)) for c in row] for row in counts]
    size = 0.28 * len(labels) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels) + 1), [*labels, "(invalid)"], rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            if count and i != j:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=5, color="red")
    fig.colorbar(image, ax=ax, fraction=0.03, label="share of the gold intent's commands")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
