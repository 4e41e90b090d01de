"""Gemma 3: a registered architecture whose parity gate probes past its sliding window.

The tiny Gemma 3 config has a window of 8 tokens and ``layer_types`` sliding, full, ...; the
gate's short probes (8 tokens) never reach past the window, so the gate adds one prompt of
window + 8 tokens, in one pass and through the KV cache (``exporters.probes``).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from exporters import export
from exporters.errors import ParityError
from exporters.spec import DecoderSpec, architecture_spec
from exporters.testing import TINY_SLIDING_WINDOW, tiny_config, tiny_model
from exporters.verify_session import OnnxCausalLM, positions

pytestmark = pytest.mark.xdist_group("exporters")
SLIDING_CHECKS = {"logits_max_abs_diff_sliding_window", "kv_cache_max_abs_diff_sliding_window"}


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    """A tiny Gemma 3 causal LM (2 layers: sliding, full) and its verified fp32 export."""
    model = tiny_model("gemma3_text", num_layers=2, head_dim=32)
    return model, export(model, tmp_path_factory.mktemp("gemma3") / "out")


def test_gemma3_text_is_registered_and_reports_its_window(caplog):
    config = tiny_config("gemma3_text", num_layers=2)
    with caplog.at_level(logging.WARNING, logger="exporters"):
        assert architecture_spec(config) is DecoderSpec
    assert "not in the tested list" not in caplog.text
    assert config.layer_types == ["sliding_attention", "full_attention"]
    assert DecoderSpec.attention_window(config) == TINY_SLIDING_WINDOW == 8
    # no window in effect: full layers only, or a window as long as the context
    assert DecoderSpec.attention_window(tiny_config("qwen3")) is None
    config.layer_types = ["full_attention", "full_attention"]
    assert DecoderSpec.attention_window(config) is None
    assert DecoderSpec.attention_window(tiny_config("mistral")) is None  # 4096 >= 128 positions


def test_the_gate_checks_a_prompt_longer_than_the_window(gemma3):
    _, result = gemma3
    checks = {c.name: c for c in result.parity.checks}
    assert SLIDING_CHECKS <= set(checks) and result.parity.passed
    assert "sliding_window: first step (past length 0), 1 x 16" in checks[
        "logits_max_abs_diff_sliding_window"].detail
    assert "prefill 4 then 12 cached decode steps" in checks[
        "kv_cache_max_abs_diff_sliding_window"].detail
    assert result.manifest.parity["reference"]["probes"]["sliding_window"] == [1, 16]


def test_the_window_really_changes_long_prompts(gemma3):
    """Why the long probe is needed: past the window the logits depend on it, before not."""
    model, result = gemma3
    wider = copy.deepcopy(model)
    wider.config.sliding_window = 12
    ids = torch.randint(3, 200, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        narrow_logits, wide_logits = model(input_ids=ids).logits, wider(input_ids=ids).logits
    torch.testing.assert_close(narrow_logits[:, :8], wide_logits[:, :8])
    assert (narrow_logits[:, 9:] - wide_logits[:, 9:]).abs().max() > 1e-3
    onnx = OnnxCausalLM(result.model_path)
    mask = np.ones_like(ids.numpy())
    cached = onnx.prefill_then_decode(ids.numpy(), mask, 5)
    assert np.abs(cached - narrow_logits.numpy()).max() <= 1e-4 * np.abs(narrow_logits.numpy()).max()


def test_a_wrong_window_fails_the_gate_past_the_window(gemma3):
    """The graph was exported with window 8; a reference with window 12 agrees on the short
    probes but not on the long one."""
    from exporters.parity import check_parity

    model, result = gemma3
    wrong = copy.deepcopy(model)
    wrong.config.sliding_window = 12

    def reference(ids, mask, position_ids=None):
        with torch.no_grad():
            return wrong(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits

    with pytest.raises(ParityError) as error:
        check_parity(result.model_path, reference, task="text-generation",
                     vocab_size=model.config.vocab_size, pad_token_id=0, special_ids=(0, 1, 2),
                     sliding_window=12)
    checks = {c["name"]: c for c in error.value.report["checks"]}
    assert not checks["logits_max_abs_diff_sliding_window"]["passed"]
    assert not checks["kv_cache_max_abs_diff_sliding_window"]["passed"]
    assert checks["logits_max_abs_diff"]["passed"] and checks["kv_cache_max_abs_diff"]["passed"]


def test_left_padding_across_the_window(gemma3):
    model, result = gemma3
    onnx = OnnxCausalLM(result.model_path)
    ids = torch.randint(3, 200, (2, 14), generator=torch.Generator().manual_seed(1)).numpy()
    mask = np.ones_like(ids)
    ids[1, :3], mask[1, :3] = 0, 0
    padded = onnx.step(ids, mask)[0][1, 3:]
    alone = onnx.step(ids[1:, 3:], mask[1:, 3:])[0][0]
    with torch.no_grad():
        reference = model(input_ids=torch.from_numpy(ids[1:, 3:]),
                          position_ids=torch.from_numpy(positions(mask[1:, 3:]))).logits[0].numpy()
    scale = np.abs(reference).max()
    assert np.abs(padded - alone).max() <= 1e-4 * scale
    assert np.abs(alone - reference).max() <= 1e-4 * scale
