"""Scores for the robot-intent tasks: accuracy, macro-F1, per-intent F1, action exact match,
per-slot precision/recall/F1 and the out-of-scope rates.

Macro-F1 averages the per-intent F1 over the intents present in the gold labels (an intent
that is only ever predicted, never gold, still lowers the precision of nothing it is
averaged over; this is scikit-learn's ``f1_score(average="macro", labels=gold labels)``).
"""

from __future__ import annotations

from collections import Counter

from .action import normalize_slots, parse_action
from .out_of_scope import NO_ACTION


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


def out_of_scope_rates(gold: list[str], pred: list[str]) -> dict:
    """How the no-action label (``none``) is handled.

    - ``false_accept_rate``: out-of-scope commands (gold ``none``) answered with an intent;
    - ``false_reject_rate``: in-scope commands answered ``none``;
    - ``in_scope_accuracy``: intent accuracy over the in-scope commands only.
    Rates are None when the gold labels have no command of that kind.
    """
    pairs = list(zip(gold, pred, strict=True))
    out = [(g, p) for g, p in pairs if g == NO_ACTION]
    inside = [(g, p) for g, p in pairs if g != NO_ACTION]
    return {
        "out_of_scope_n": len(out),
        "false_accept_rate": sum(p != NO_ACTION for _, p in out) / len(out) if out else None,
        "false_reject_rate": sum(p == NO_ACTION for _, p in inside) / len(inside) if inside else None,
        "in_scope_accuracy": sum(g == p for g, p in inside) / len(inside) if inside else None,
    }


def classification_scores(gold: list[str], pred: list[str]) -> dict:
    """accuracy, macro_f1, per-intent scores and the out-of-scope rates for intent names."""
    if not gold:
        raise ValueError("No examples to score")
    per = per_label_f1(gold, pred)
    return {
        "n": len(gold),
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold),
        "macro_f1": sum(v["f1"] for v in per.values()) / len(per),
        **out_of_scope_rates(gold, pred),
        "per_intent": per,
    }


def slot_scores(gold_slots: list[dict], pred_slots: list[dict | None]) -> dict[str, dict]:
    """Per-slot-key precision, recall and F1 of (key, value) pairs.

    A predicted pair is right when the gold action has the same key with the same value;
    an unparseable output predicts nothing. ``support`` counts gold pairs.
    """
    tp, fp, fn = Counter(), Counter(), Counter()
    for gold, pred in zip(gold_slots, pred_slots, strict=True):
        gold = normalize_slots(gold)
        pred = pred or {}
        for key, value in pred.items():
            if gold.get(key) == value:
                tp[key] += 1
            else:
                fp[key] += 1
        for key, value in gold.items():
            if pred.get(key) != value:
                fn[key] += 1
    out = {}
    for key in sorted(set(tp) | set(fp) | set(fn)):
        precision = tp[key] / (tp[key] + fp[key]) if tp[key] + fp[key] else 0.0
        recall = tp[key] / (tp[key] + fn[key]) if tp[key] + fn[key] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[key] = {"precision": precision, "recall": recall, "f1": f1,
                    "support": tp[key] + fn[key]}
    return out


def split_generated(text: str) -> tuple[str, dict | None]:
    """(intent name, slots or None if the text does not parse as an action)."""
    text = text.strip()
    try:
        return parse_action(text)
    except ValueError:
        return (text.split()[0] if text.split() else ""), None


def generation_scores(gold_intents: list[str], gold_slots: list[dict], outputs: list[str],
                      known_intents: set[str]) -> dict:
    """Intent-name exact match, full-action exact match, macro-F1, invalid-name rate,
    per-slot scores (``slots``) and the out-of-scope rates (see :func:`out_of_scope_rates`).

    A generated name that is not a real intent counts as wrong and as ``invalid_intent``.
    """
    names, invalid = [], 0
    for text in outputs:
        name, _ = split_generated(text)
        invalid += name not in known_intents
        names.append(name)
    scores = classification_scores(gold_intents, names)
    n = len(gold_intents)
    parsed = [split_generated(text)[1] for text in outputs]
    full = sum(
        1 for g, nm, slots, pred in zip(gold_intents, names, gold_slots, parsed, strict=True)
        if nm == g and pred == normalize_slots(slots)
    )
    return {
        "n": n,
        "intent_exact_match": scores["accuracy"],
        "action_exact_match": full / n,
        "macro_f1": scores["macro_f1"],
        "invalid_intent_rate": invalid / n,
        **{k: scores[k] for k in ("out_of_scope_n", "false_accept_rate", "false_reject_rate",
                                  "in_scope_accuracy")},
        "slots": slot_scores(gold_slots, parsed),
        "per_intent": scores["per_intent"],
    }
