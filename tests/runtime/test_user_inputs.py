"""What an app developer may pass: numpy ids, odd eos/stop values, the wrong task's method,
prompts near the context end, seeded sampling in batches, and folders whose manifest
disagrees with the graph. Each gives correct results or a clear runtime error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import runtime
from runtime.errors import InvalidSettingError, ModelFolderError

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")

GREEDY = {"max_new_tokens": 6, "eos_token_id": []}


def test_numpy_ids_equal_python_ids(generator):
    ids = generator.tokenizer.encode("lamp on")
    want = generator.generate(ids, **GREEDY).token_ids
    assert generator.generate(np.array(ids, dtype=np.int32), **GREEDY).token_ids == want
    rows = np.array([ids, ids[::-1]])
    batch = generator.generate(rows, **GREEDY)
    assert [r.token_ids for r in batch] == [want, generator.generate(ids[::-1], **GREEDY).token_ids]
    with pytest.raises(InvalidSettingError, match="a prompt must be"):
        generator.generate(np.array([0.5, 1.5]), max_new_tokens=2)


def test_eos_token_id_accepts_numpy_ints_and_rejects_junk(generator):
    first = generator.generate("lamp on", **GREEDY).token_ids[0]
    for eos in (first, np.int64(first), [first], (first, 3)):
        result = generator.generate("lamp on", max_new_tokens=6, eos_token_id=eos)
        assert result.token_ids == [first] and result.finish_reason == "eos"
        assert result.text == ""
    for bad in ("x", -1, 259, [2, None], 2.0, True):
        with pytest.raises(InvalidSettingError, match=r"eos_token_id must be .* \[0, 259\)"):
            generator.generate("lamp on", max_new_tokens=2, eos_token_id=bad)


@pytest.mark.parametrize("stop", [5, [None], ["ok", 3], b"x"])
def test_non_string_stop_values_raise_invalid_setting(generator, stop):
    with pytest.raises(InvalidSettingError, match="stop must be a non-empty string"):
        generator.generate("hi", max_new_tokens=2, stop=stop)


def test_calling_the_other_tasks_method_names_the_right_one(generator, classifier):
    with pytest.raises(InvalidSettingError, match=r"classify\(\) needs a 'text-classification'.*"
                                                  r"call generate\(\)/stream\(\)"):
        generator.classify("lamp on")
    for method in (classifier.generate, classifier.stream):
        with pytest.raises(InvalidSettingError, match=r"needs a 'text-generation'.*call classify"):
            method("lamp on")


def test_single_token_and_special_token_prompts(generator):
    one = generator.generate("<|im_end|>", max_new_tokens=1, eos_token_id=[])
    assert one.prompt_token_count == 1 and len(one.token_ids) == 1
    assert one.finish_reason == "length"
    assert list(generator.stream("<|im_end|>", max_new_tokens=1, eos_token_id=[])) in (
        [one.text], [])  # one byte-level token may be half a character: no text then
    assert one.text == generator.tokenizer.decode(one.token_ids)
    (alone,) = generator.generate(["<|im_end|>"], max_new_tokens=1, eos_token_id=[])
    assert alone.token_ids == one.token_ids  # a batch of one is a list of one


def test_truncate_leaves_room_for_max_new_tokens(generator):
    ids = [5 + i % 200 for i in range(120)]  # fits the 128-token context, but 120 + 16 does not
    plain = generator.generate(ids, max_new_tokens=16, eos_token_id=[])
    assert len(plain.token_ids) == 8 and plain.finish_reason == "length"  # ran into the end
    cut = generator.generate(ids, max_new_tokens=16, eos_token_id=[], truncate=True)
    assert cut.prompt_token_count == 128 - 16 and len(cut.token_ids) == 16
    assert cut.token_ids == generator.generate(ids[-112:], max_new_tokens=16,
                                               eos_token_id=[]).token_ids
    short = generator.generate(ids[:20], max_new_tokens=16, eos_token_id=[], truncate=True)
    assert short.prompt_token_count == 20  # nothing to cut


def test_seeded_sampling_in_a_batch_equals_each_row_alone(generator):
    prompts = ["lamp on", "The robot turns", "é😀"]
    kwargs = {"max_new_tokens": 10, "eos_token_id": [], "temperature": 1.5, "top_p": 0.98,
              "repetition_penalty": 1.2, "seed": 123}
    batch = generator.generate(prompts, **kwargs)
    alone = [generator.generate(p, **kwargs).token_ids for p in prompts]
    assert [r.token_ids for r in batch] == alone
    assert alone[0] != generator.generate(prompts[0], **{**kwargs, "seed": 124}).token_ids
    greedy = generator.generate(prompts[0], max_new_tokens=10, eos_token_id=[]).token_ids
    assert alone[0] != greedy  # the settings really sample


def _edit_manifest(exports, key, tmp_path, **model_fields):
    folder = shutil.copytree(exports[key], tmp_path / key)
    data = json.loads((folder / "shadow_edge.json").read_text())
    data["model"].update(model_fields)
    (folder / "shadow_edge.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(
    "key, fields, message",
    [
        ("fp32", {"num_key_value_heads": 3},
         "model.num_key_value_heads is 3 but past_key_values.0.key has 2"),
        ("fp32", {"head_dim": 8}, "model.head_dim is 8 but past_key_values.0.key has 16"),
        ("fp32", {"vocab_size": 100}, "model.vocab_size is 100 but logits have 259"),
        ("cls", {"num_labels": 2, "id2label": {"0": "a", "1": "b"}},
         "model.num_labels is 2 but the ONNX classifier's logits have 3"),
    ],
)
def test_manifest_sizes_that_disagree_with_the_graph_fail_at_load(exports, tmp_path, key,
                                                                  fields, message):
    folder = _edit_manifest(exports, key, tmp_path, **fields)
    with pytest.raises(ModelFolderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runtime.load(folder, threads=1)


def test_tampered_tokenizer_of_the_same_size_is_caught_by_hashes(exports, tmp_path):
    folder = shutil.copytree(exports["fp32"], tmp_path / "fp32")
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text.replace("<|im_end|>", "<|im_xnd|>"))
    assert runtime.load(folder, threads=1).eos_token_ids == [2]  # sizes match: loads
    with pytest.raises(ModelFolderError, match="'tokenizer.json' .* does not match its SHA-256"):
        runtime.load(folder, verify_hashes=True)


def test_folder_without_tokenizer_config_loads_but_chat_names_the_fix(exports, tmp_path):
    folder = shutil.copytree(exports["fp32"], tmp_path / "fp32")
    data = json.loads((folder / "shadow_edge.json").read_text())
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink()
        del data["files"][name]
    (folder / "shadow_edge.json").write_text(json.dumps(data))
    model = runtime.load(folder, threads=1)
    assert model.eos_token_ids == [2] and model.pad_token_id == 0  # from the manifest
    assert model.generate("hi", **GREEDY).token_ids == \
        runtime.load(exports["fp32"], threads=1).generate("hi", **GREEDY).token_ids
    with pytest.raises(InvalidSettingError, match="no chat template.*add chat_template"):
        model.generate([{"role": "user", "content": "hi"}], max_new_tokens=2)


@pytest.mark.parametrize("message", [{"role": 5, "content": "x"}, {"role": "user", "content": ["x"]}])
def test_non_string_role_or_content_is_a_clear_chat_error(generator, message):
    with pytest.raises(InvalidSettingError, match="chat template rejected.*role and content is a"):
        generator.generate([message], max_new_tokens=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"providers": 5}, "providers must be a name such as 'cpu'"),
        ({"providers": [None]}, "providers must be a name such as 'cpu'"),
        ({"optimization": ["all"]}, "unknown graph optimization level"),
        ({"threads": "2"}, "threads must be a positive integer"),
    ],
)
def test_load_settings_of_the_wrong_type_raise_invalid_setting(exports, kwargs, message):
    with pytest.raises(InvalidSettingError, match=message):
        runtime.load(exports["fp32"], **kwargs)
