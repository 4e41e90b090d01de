"""Detaching and folding in torch: pooling, positions, the projection fold and its check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exporters.errors import ExportError
from exporters.folding import FOLD_TOLERANCE, detach, fold, fold_head
from exporters.shadow_module import DetachedShadow
from exporters.spec import TEXT_CLASSIFICATION, TEXT_GENERATION
from exporters.testing import tiny_model
from shadow_edge.errors import ConfigError
from shadow_edge.pooling import last_token_index, pool_last_token, positions_from_mask


def test_positions_follow_the_mask_under_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_last_token_index_for_left_right_and_no_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [3, 1, 3, 0]
    hidden = torch.arange(4 * 4 * 2, dtype=torch.float32).view(4, 4, 2)
    pooled = pool_last_token(hidden, mask)
    assert torch.equal(pooled, hidden[torch.arange(4), torch.tensor([3, 1, 3, 0])])


def test_fold_head_equals_head_after_projection_and_keeps_bias():
    torch.manual_seed(0)
    projection = nn.Linear(8, 16, bias=False)
    head = nn.Linear(16, 5, bias=True)
    folded = fold_head(head, projection)
    assert folded.weight.shape == (5, 8) and folded.bias is not None
    x = torch.randn(3, 8)
    assert torch.allclose(folded(x), head(projection(x)), atol=1e-6)
    assert torch.equal(folded.bias, head.bias)


def test_fold_refuses_a_projection_with_bias():
    with pytest.raises(ExportError, match="bias"):
        fold_head(nn.Linear(16, 5), nn.Linear(8, 16, bias=True))


def _projected(hidden: int = 32, base_hidden: int = 48, task=TEXT_GENERATION):
    """A detached shadow whose backbone is narrower (Hs=32) than the head's input (H=48)."""
    model = tiny_model("llama", task, hidden_size=hidden, num_layers=1)
    out = 259 if task == TEXT_GENERATION else 3
    torch.manual_seed(1)
    head = nn.Linear(base_hidden, out, bias=task == TEXT_CLASSIFICATION)
    projection = nn.Linear(hidden, base_hidden, bias=False)
    return DetachedShadow(model.base_model, head, task=task, projection=projection,
                          id2label={0: "a", 1: "b", 2: "c"} if out == 3 else None).eval()


@pytest.mark.parametrize("task", [TEXT_GENERATION, TEXT_CLASSIFICATION])
def test_fold_removes_the_projection_and_keeps_logits(task):
    model = _projected(task=task)
    folded, rel = fold(model)
    assert folded.projection is None
    assert folded.head.weight.shape == (model.head.out_features, 32)
    assert 0.0 <= rel <= FOLD_TOLERANCE
    ids = torch.randint(3, 259, (2, 6))
    assert torch.allclose(folded.logits(ids), model.logits(ids), atol=1e-5)
    # one [V, Hs] matrix instead of [H, Hs] + [V, H]
    removed = 48 * 32 + model.head.weight.numel() - folded.head.weight.numel()
    assert model.parameter_count()[0] - folded.parameter_count()[0] == removed


def test_fold_check_rejects_non_finite_weights():
    model = _projected()
    with torch.no_grad():
        model.projection.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="folding the projection"):
        fold(model)


def test_detach_hf_model_unties_and_copies_weights():
    model = tiny_model("gpt2", TEXT_GENERATION, num_layers=1)  # GPT-2 ties lm_head to wte
    assert model.lm_head.weight is model.transformer.wte.weight
    detached = detach(model)
    assert detached.task == TEXT_GENERATION and detached.kind == "standalone"
    head, embed = detached.model.head.weight, detached.model.backbone.get_input_embeddings().weight
    assert head.data_ptr() != embed.data_ptr()
    assert head.data_ptr() != model.lm_head.weight.data_ptr()
    assert torch.equal(head, model.lm_head.weight)
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}
    # the export holds one extra [V, H] head because the tie is undone
    assert detached.parameters == sum(unique.values()) + model.lm_head.weight.numel()
    assert detached.bytes == 4 * detached.parameters
    assert detached.tokens.eos_token_id == [2] and detached.tokens.pad_token_id == 0
    ids = torch.randint(3, 259, (1, 5))
    assert torch.allclose(detached.model.logits(ids), model(ids).logits, atol=1e-6)


def test_detach_rejects_a_task_the_model_does_not_have():
    with pytest.raises(ConfigError, match="text-generation model.*text-classification"):
        detach(tiny_model("llama", TEXT_GENERATION, num_layers=1), task="text-classification")


def test_detached_classifier_matches_hf_pooling_without_padding():
    model = tiny_model("qwen2", TEXT_CLASSIFICATION, num_layers=1)
    detached = detach(model)
    assert detached.model.id2label == {0: "label_0", 1: "label_1", 2: "label_2"}
    ids = torch.randint(3, 259, (1, 7))
    assert torch.allclose(detached.model.logits(ids), model(ids).logits, atol=1e-5)


def test_problem_type_travels_from_the_trained_base_through_the_checkpoint(tmp_path):
    """A multi-label adapter keeps its problem_type although its base folder has none, so the
    export scores with sigmoids (runtime.classification)."""
    from transformers import AutoModelForSequenceClassification

    from exporters.testing import tiny_model_folder
    from shadow_edge import (
        ShadowConfig,
        ShadowForSequenceClassification,
        get_shadow_model,
        load_shadow_checkpoint,
    )

    base_dir = tiny_model_folder(tmp_path / "base", "llama", TEXT_CLASSIFICATION)
    base = AutoModelForSequenceClassification.from_pretrained(str(base_dir))
    assert base.config.problem_type is None and detach(base_dir).model.problem_type is None
    base.config.problem_type = "multi_label_classification"  # as a user sets it to train
    model = ShadowForSequenceClassification(get_shadow_model(
        base, ShadowConfig(base_model_name_or_path=str(base_dir))))
    model.save_pretrained(tmp_path / "ckpt")
    recorded = ShadowConfig.from_pretrained(tmp_path / "ckpt").problem_type
    assert recorded == "multi_label_classification"
    assert load_shadow_checkpoint(tmp_path / "ckpt").config.problem_type == recorded
    assert detach(tmp_path / "ckpt").model.problem_type == recorded
