"""The training library: one loop for the CLI, the examples and Python users."""

from __future__ import annotations

import pytest
import torch

from shadow_edge import ConfigError, ShadowConfig, ShadowForCausalLM, get_shadow_model
from shadow_edge.training import TrainingSettings, restore_trainable_state, train, trainable_state
from shadow_edge.training_data import IGNORE_INDEX, PadCollator
from tests.core.shadow_helpers import causal_base, randomize_adapter, token_batch


def causal_model(arch="llama", **config) -> ShadowForCausalLM:
    peft = get_shadow_model(causal_base(arch), ShadowConfig(**config))
    return ShadowForCausalLM(peft, shadow_loss_weight=1.0)


def examples(n=24, seed=0):
    """Prompt/target rows: 6 prompt tokens (label -100) then 4 target tokens."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(3, 256, (10,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 6 + ids[6:]})
    return rows


@pytest.mark.parametrize("mode", ["shadow_only", "base_shadow"])
def test_logits_to_keep_gives_the_same_loss_and_the_kept_logits(mode):
    model = causal_model(dropout=0.0).eval()
    randomize_adapter(model.peft_model)
    model.set_inference_mode(mode)
    batch = PadCollator(0, supervised_logits_only=True)(examples(3))
    kept = batch.pop("logits_to_keep")
    assert kept.tolist() == [5, 6, 7, 8]  # positions predicting the 4 targets
    full = model(**batch)
    part = model(**batch, logits_to_keep=kept)
    torch.testing.assert_close(part.loss, full.loss)
    torch.testing.assert_close(part.logits, full.logits[:, kept])
    torch.testing.assert_close(part.shadow_logits, full.shadow_logits[:, kept])


def test_logits_to_keep_is_refused_for_classifiers():
    from shadow_edge import ShadowForSequenceClassification
    from tests.core.shadow_helpers import seq_cls_base

    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("llama"), ShadowConfig()))
    ids = token_batch(2, 5)
    with pytest.raises(ConfigError, match="causal LMs only"):
        model(input_ids=ids, logits_to_keep=torch.tensor([1]))


def test_warm_up_then_joint_steps_are_counted_and_the_base_never_changes():
    model = causal_model()
    base_before = {k: v.clone() for k, v in model.peft_model.base_model.state_dict().items()}
    settings = TrainingSettings(max_steps=6, shadow_only_steps=2, batch_size=4, lr=1e-3,
                                logging_steps=1)
    result = train(model, examples(), settings, pad_token_id=0)
    assert result.steps == 6
    assert result.steps_by_phase == {"shadow_only": 2, "base_shadow": 4}
    assert result.train_loss is not None and result.train_loss > 0
    assert model.inference_mode == "base_shadow" and not model.training
    for key, value in model.peft_model.base_model.state_dict().items():
        assert torch.equal(value, base_before[key]), key


def test_bf16_runs_the_passes_under_bf16_autocast_and_keeps_fp32_weights():
    model = causal_model()
    seen = []
    hook = model.peft_model.base_model.register_forward_hook(
        lambda module, args, output: seen.append(
            (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))))
    settings = TrainingSettings(max_steps=3, batch_size=4, lr=1e-3, bf16=True)
    before = {k: v.clone() for k, v in trainable_state(model).items()}
    result = train(model, examples(), settings, pad_token_id=0)
    hook.remove()
    assert result.steps == 3 and result.train_loss > 0
    assert seen[:3] == [(True, torch.bfloat16)] * 3  # the training steps' forward passes
    after = trainable_state(model)
    assert {v.dtype for v in after.values()} == {torch.float32}
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained


def test_the_best_evaluated_weights_are_kept():
    model = causal_model()
    seen = []

    def evaluate(m):
        # scores 1.0 at the first evaluation only: its weights must come back at the end
        seen.append(trainable_state(m))
        return (1.0 if len(seen) == 1 else 0.0), {"mode": m.inference_mode}

    settings = TrainingSettings(max_steps=4, eval_steps=2, batch_size=4, lr=1e-2)
    result = train(model, examples(), settings, pad_token_id=0, evaluate=evaluate)
    assert [h["step"] for h in result.history] == [2, 4]
    assert result.best["step"] == 2 and result.best["score"] == 1.0
    final = trainable_state(model)
    assert any(not torch.equal(seen[0][k], seen[1][k]) for k in final)  # training moved them
    for key, value in final.items():
        assert torch.equal(value, seen[0][key]), key


def test_warm_up_models_do_not_compete_with_joint_ones():
    model = causal_model()
    settings = TrainingSettings(max_steps=4, shadow_only_steps=2, eval_steps=2, batch_size=4)
    scores = iter([0.9, 0.1])  # the warm-up model scores higher, but is not a joint model
    result = train(model, examples(), settings, pad_token_id=0,
                   evaluate=lambda m: (next(scores), {}))
    assert [h["phase"] for h in result.history] == ["shadow_only", "base_shadow"]
    assert result.best["step"] == 4


def test_the_shadow_the_adapters_and_the_heads_get_their_own_learning_rates():
    from transformers import TrainerCallback

    from shadow_edge import ShadowForSequenceClassification
    from tests.core.shadow_helpers import seq_cls_base

    # a BERT classifier: the rows carry segment ids, which the collator passes on
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("bert"), ShadowConfig()))
    rows = [{"input_ids": [1, 5 + i, 2, 9, 2], "token_type_ids": [0, 0, 0, 1, 1], "labels": i % 3}
            for i in range(8)]
    lrs = {}

    class RecordLearningRates(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            lrs.update({id(p): group["lr"] for group in optimizer.param_groups
                        for p in group["params"]})

    settings = TrainingSettings(max_steps=1, batch_size=4, lr=1e-3, shadow_lr=1e-4, head_lr=1e-2,
                                lr_scheduler="constant_with_warmup")
    train(model, rows, settings, pad_token_id=0, callbacks=[RecordLearningRates()])

    def lr_of(module):
        return {lrs[id(p)] for p in module.parameters() if p.requires_grad}

    peft = model.peft_model
    assert set(lrs) == {id(p) for p in model.parameters() if p.requires_grad}
    assert lr_of(peft.shadow_model) == {1e-4}
    assert lr_of(peft.shadow_injection_model) == lr_of(peft.shadow_update_model) == {1e-3}
    assert lr_of(model.classifier_head) == lr_of(model.shadow_classifier_head) == {1e-2}


def test_the_time_budget_stops_training():
    model = causal_model()
    settings = TrainingSettings(max_steps=1000, max_minutes=1e-6, batch_size=4)
    result = train(model, examples(), settings, pad_token_id=0)
    assert result.steps == 1


def test_restore_trainable_state_round_trip():
    model = causal_model()
    state = trainable_state(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    restore_trainable_state(model, state)
    for name, value in trainable_state(model).items():
        assert torch.equal(value, state[name])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("max_steps", 0, "max_steps must be >= 1"), ("lr", 0.0, "lr must be > 0"),
     ("lr_scheduler", "exp", "lr_scheduler must be one of"),
     ("batch_size", 0, "batch_size must be >= 1"), ("max_minutes", -1.0, "max_minutes"),
     ("shadow_lr", -1e-4, "shadow_lr must be > 0")],
)
def test_bad_settings_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainingSettings(**{field: value})
