"""Scores for the robot-intent tasks: accuracy, macro-F1, per-intent F1, action exact match.

Macro-F1 averages the per-intent F1 over the intents present in the gold labels (an intent
that is only ever predicted, never gold, still lowers the precision of nothing it is
averaged over; this is scikit-learn's ``f1_score(average="macro", labels=gold labels)``).
"""

from __future__ import annotations

from collections import Counter

from .data import normalize_slots, parse_action


def per_label_f1(gold: list[str], pred: list[str]) -> dict[str, dict]:
    """{label: {"precision", "recall", "f1", "support"}} for each gold label."""
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        if g == p:
            tp[g] += 1
        else:
            fn[g] += 1
            fp[p] += 1
    out = {}
    for label in sorted(set(gold)):
        precision = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        recall = tp[label] / (tp[label] + fn[label]) if tp[label] + fn[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1,
                      "support": tp[label] + fn[label]}
    return out


def classification_scores(gold: list[str], pred: list[str]) -> dict:
    """accuracy, macro_f1 and per-intent scores for intent names."""
    if not gold:
        raise ValueError("No examples to score")
    per = per_label_f1(gold, pred)
    return {
        "n": len(gold),
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold),
        "macro_f1": sum(v["f1"] for v in per.values()) / len(per),
        "per_intent": per,
    }


def split_generated(text: str) -> tuple[str, dict | None]:
    """(intent name, slots or None if the text does not parse as an action)."""
    text = text.strip()
    try:
        return parse_action(text)
    except ValueError:
        return (text.split()[0] if text.split() else ""), None


def generation_scores(gold_intents: list[str], gold_slots: list[dict], outputs: list[str],
                      known_intents: set[str]) -> dict:
    """Intent-name exact match, full-action exact match, macro-F1, invalid-name rate.

    A generated name that is not a real intent counts as wrong and as ``invalid_intent``.
    """
    names, invalid = [], 0
    for text in outputs:
        name, _ = split_generated(text)
        invalid += name not in known_intents
        names.append(name)
    scores = classification_scores(gold_intents, names)
    n = len(gold_intents)
    full = sum(
        1 for g, nm, text, slots in zip(gold_intents, names, outputs, gold_slots, strict=True)
        if nm == g and split_generated(text)[1] == normalize_slots(slots)
    )
    return {
        "n": n,
        "intent_exact_match": scores["accuracy"],
        "action_exact_match": full / n,
        "macro_f1": scores["macro_f1"],
        "invalid_intent_rate": invalid / n,
        "per_intent": scores["per_intent"],
    }
