"""Encoder bases (BERT, DistilBERT, RoBERTa) for ShadowForSequenceClassification.

The same equations as for decoders (FORMAT.md) on the encoder layers; each family's own
head on the first non-padding token; bidirectional attention with the padding mask;
token_type_ids where the model has them.
"""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from shadow_edge import (
    CheckpointError,
    ConfigError,
    ShadowCache,
    ShadowConfig,
    ShadowForCausalLM,
    ShadowForSequenceClassification,
    get_shadow_model,
)
from shadow_edge.backbone import find_decoder_stack
from shadow_edge.encoder_heads import (
    FeaturesHead,
    PoolerHead,
    PreClassifierHead,
    encoder_classifier_head,
    first_token_index,
)
from shadow_edge.encoders import encoder_position_ids, is_encoder_config
from tests.core.shadow_helpers import (
    clone_base,
    randomize,
    randomize_adapter,
    seq_cls_base,
    token_batch,
)
from tests.tiny_models import ENCODER_ARCHITECTURES, tiny_config

HEADS = {"bert": PoolerHead, "distilbert": PreClassifierHead, "roberta": FeaturesHead}


@pytest.fixture(params=ENCODER_ARCHITECTURES)
def encoder_arch(request) -> str:
    return request.param


def encoder_model(arch, *, shadow_model=None, **config) -> ShadowForSequenceClassification:
    """A tiny encoder classifier (3 labels) with a randomised adapter and heads (HF's 0.02
    init would leave logits near 0, where differences are hard to see)."""
    config.setdefault("dropout", 0.0)
    peft = get_shadow_model(seq_cls_base(arch), ShadowConfig(**config), shadow_model=shadow_model)
    model = ShadowForSequenceClassification(peft).eval()
    randomize_adapter(peft)
    randomize(peft.shadow_model, seed=7, std=0.1)
    randomize(model.classifier_head, seed=8, std=0.3)
    randomize(model.shadow_classifier_head, seed=9, std=0.3)
    return model


def both_modes(model, **inputs):
    out = {}
    for mode in ("base_shadow", "shadow_only"):
        model.set_inference_mode(mode)
        with torch.no_grad():
            out[mode] = model(**inputs).logits
    return out


def test_encoder_detection_reads_model_type_and_encoder_decoder():
    for config in (tiny_config("bert"), tiny_config("distilbert"), tiny_config("roberta"),
                   tf.ElectraConfig(), {"model_type": "xlm-roberta"}):
        assert is_encoder_config(config)
    for config in (tiny_config("llama"), tiny_config("gpt2"), tiny_config("gemma3_text"),
                   tf.BartConfig(), {"model_type": "qwen3"}):
        assert not is_encoder_config(config)


def test_positions_follow_the_mask_for_each_family():
    mask = torch.tensor([[0, 1, 1], [1, 1, 0]])
    assert encoder_position_ids(tiny_config("bert"), mask).tolist() == [[0, 0, 1], [0, 1, 1]]
    roberta = tiny_config("roberta")
    roberta.pad_token_id = 1  # as in roberta-base: real tokens from padding_idx + 1
    assert encoder_position_ids(roberta, mask).tolist() == [[1, 2, 3], [2, 3, 1]]
    # unpadded rows: transformers' own defaults
    ids = torch.tensor([[5, 6, 7]])
    expected = tf.models.roberta.modeling_roberta.RobertaEmbeddings.create_position_ids_from_input_ids(ids, 1)
    assert torch.equal(encoder_position_ids(roberta, torch.ones_like(ids)), expected)


def test_first_token_index_under_left_and_right_padding():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert first_token_index(mask).tolist() == [0, 2, 3, 3]


def test_implicit_shadow_is_the_encoder_layer_type(encoder_arch):
    base = seq_cls_base(encoder_arch)
    peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=2))
    shadow = peft.shadow_model
    assert type(shadow) is type(base.base_model)
    assert len(find_decoder_stack(shadow).layers) == 2
    assert type(find_decoder_stack(shadow).layers[0]) is type(find_decoder_stack(base).layers[0])
    assert peft.is_encoder and peft.embeddings_shared  # fed the base's word embeddings
    assert getattr(shadow, "pooler", None) is None  # the pooler belongs to the head
    keys = set(peft.state_dict())
    assert not any("pooler" in k or "word_embeddings" in k for k in keys)
    assert peft.shadow_injection_model.injection_downs.shape == (3, 64, 16)  # slots for layers 1..3


def test_fresh_adapter_leaves_the_base_logits_unchanged(encoder_arch):
    base = seq_cls_base(encoder_arch)
    plain = clone_base(base)
    model = ShadowForSequenceClassification(get_shadow_model(base, ShadowConfig(dropout=0.0))).eval()
    ids = token_batch(2, 7)
    mask = torch.ones_like(ids)
    out = model(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(out.logits, plain(input_ids=ids, attention_mask=mask).logits,
                               rtol=0, atol=1e-6)
    assert isinstance(model.classifier_head, HEADS[encoder_arch])
    assert out.shadow_logits.shape == (2, 3)


def test_the_trainable_encoder_head_is_a_copy_in_the_bases_place(encoder_arch):
    base = seq_cls_base(encoder_arch)
    loaded = dict(encoder_classifier_head(base).named_children())
    model = ShadowForSequenceClassification(get_shadow_model(base, ShadowConfig()))
    in_place = dict(encoder_classifier_head(base).named_children())
    trained = dict(model.classifier_head.named_children())
    for name, module in loaded.items():
        assert in_place[name] is trained[name] and trained[name] is not module, name
        assert not any(p.requires_grad for p in module.parameters()), name
    assert all(p.requires_grad for p in model.classifier_head.parameters())


def test_injection_and_update_act_on_the_encoder_layers(encoder_arch):
    model = encoder_model(encoder_arch)
    plain = clone_base(model.peft_model.base_model)
    ids = token_batch(2, 7)
    logits = both_modes(model, input_ids=ids, attention_mask=torch.ones_like(ids))
    assert (logits["base_shadow"] - plain(input_ids=ids).logits).abs().max() > 1e-3
    # shadow-only: the shadow head on the shadow start state, first token pooled
    start = model.peft_model.shadow_hidden_states(input_ids=ids, attention_mask=torch.ones_like(ids))
    torch.testing.assert_close(logits["shadow_only"], model.shadow_classifier_head(start))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_equal_the_rows_alone_in_both_modes(encoder_arch, side):
    model = encoder_model(encoder_arch)
    rows = [token_batch(1, 9, seed=1)[0], token_batch(1, 4, seed=2)[0]]
    ids = torch.zeros(2, 9, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(9 - len(row), 9) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    batched = both_modes(model, input_ids=ids, attention_mask=mask)
    for i, row in enumerate(rows):
        alone = both_modes(model, input_ids=row[None], attention_mask=torch.ones(1, len(row), dtype=torch.long))
        for mode in alone:
            torch.testing.assert_close(batched[mode][i], alone[mode][0], rtol=1e-4, atol=1e-5)


def test_token_type_ids_reach_the_base_and_the_shadow():
    model = encoder_model("bert")
    ids = token_batch(1, 8)
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    one = both_modes(model, input_ids=ids)
    two = both_modes(model, input_ids=ids, token_type_ids=types)
    for mode in one:
        assert (one[mode] - two[mode]).abs().max() > 1e-3, mode
    start = model.peft_model.shadow_hidden_states(input_ids=ids, token_type_ids=types)
    torch.testing.assert_close(two["shadow_only"], model.shadow_classifier_head(start))


def test_distilbert_has_no_token_types_and_ignores_them():
    model = encoder_model("distilbert")
    ids = token_batch(1, 8)
    plain = both_modes(model, input_ids=ids)
    typed = both_modes(model, input_ids=ids, token_type_ids=torch.ones_like(ids))
    for mode in plain:
        torch.testing.assert_close(plain[mode], typed[mode], rtol=0, atol=0)


def test_save_and_load_round_trip(encoder_arch, tmp_path):
    model = encoder_model(encoder_arch, modules_to_save=["classifier_head", "shadow_classifier_head"])
    ids = token_batch(2, 6)
    before = both_modes(model, input_ids=ids)
    model.save_pretrained(tmp_path)
    loaded = ShadowForSequenceClassification.from_pretrained(
        seq_cls_base(encoder_arch), tmp_path, is_trainable=False)
    after = both_modes(loaded, input_ids=ids)
    for mode in before:
        torch.testing.assert_close(after[mode], before[mode], rtol=0, atol=0)


def test_explicit_shadow_from_a_smaller_encoder_with_the_hidden_projection(encoder_arch, tmp_path):
    small = tf.AutoModel.from_config(tiny_config(encoder_arch, hidden_size=32, num_hidden_layers=2))
    model = encoder_model(encoder_arch, shadow_model=small)
    peft = model.peft_model
    assert peft.is_explicit and not peft.embeddings_shared
    assert peft.shadow_hidden_projection.weight.shape == (64, 32)
    ids = token_batch(2, 6)
    before = both_modes(model, input_ids=ids)
    assert before["shadow_only"].shape == (2, 3)
    model.save_pretrained(tmp_path)
    # rebuilt from shadow_model_config: no shadow_model= needed
    loaded = ShadowForSequenceClassification.from_pretrained(seq_cls_base(encoder_arch), tmp_path)
    after = both_modes(loaded, input_ids=ids)
    for mode in before:
        torch.testing.assert_close(after[mode], before[mode], rtol=0, atol=0)


def test_loss_trains_the_adapter_and_heads_not_the_base(encoder_arch):
    model = encoder_model(encoder_arch).train()
    frozen = {k: v.clone() for k, v in model.peft_model.base_model.state_dict().items()
              if not k.startswith(("classifier", "pre_classifier", "bert.pooler"))}
    ids = token_batch(4, 6)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 2, 1])}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    state = model.peft_model.base_model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())


def test_hf_trainer_trains_an_encoder_classifier(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = encoder_model("bert")
    ids = token_batch(8, 6, seed=11)
    rows = [{"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]),
             "token_type_ids": torch.zeros_like(ids[i]), "labels": torch.tensor(i % 3)}
            for i in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                             learning_rate=5e-3, report_to=[], use_cpu=True, save_steps=3,
                             dataloader_num_workers=0)
    before = model.state_dict()["shadow_injection_model.injection_ups"].clone()
    Trainer(model=model, args=args, train_dataset=rows).train()
    assert not torch.equal(before, model.state_dict()["shadow_injection_model.injection_ups"])
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "checkpoint-3" / "model.safetensors")
    assert set(saved) == set(model.state_dict())
    assert not any(k.startswith("bert.") for k in saved)


def test_export_shadow_gives_the_transformers_classifier_of_the_shadow(encoder_arch):
    model = encoder_model(encoder_arch)
    exported = model.export_shadow()
    assert type(exported) is type(model.peft_model.base_model)
    ids = token_batch(2, 6)
    model.set_inference_mode("shadow_only")
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, model(input_ids=ids).logits)


def test_an_encoder_cannot_generate_text():
    masked_lm = tf.BertForMaskedLM(tiny_config("bert"))
    with pytest.raises(ConfigError, match="encoder .* cannot generate text"):
        ShadowForCausalLM(get_shadow_model(masked_lm, ShadowConfig()))


def test_an_encoder_has_no_kv_cache():
    model = encoder_model("roberta")
    ids = token_batch(1, 4)
    with pytest.raises(ConfigError, match="no KV cache"):
        model(input_ids=ids, use_cache=True)
    with pytest.raises(ConfigError, match="no KV cache"):
        ShadowCache.for_model(model.peft_model)


def test_an_unsupported_encoder_family_is_refused_by_name():
    config = tf.ElectraConfig(vocab_size=256, embedding_size=32, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64)
    with pytest.raises(ConfigError, match="electra.*not supported.*bert"):
        get_shadow_model(tf.ElectraForSequenceClassification(config), ShadowConfig())


def test_a_checkpoint_of_another_encoder_does_not_load(tmp_path):
    encoder_model("bert").save_pretrained(tmp_path)
    with pytest.raises(CheckpointError):
        ShadowForSequenceClassification.from_pretrained(seq_cls_base("roberta"), tmp_path)
