"""The real robot-intent pipeline on the committed checkpoints (issue 12).

Both checkpoints are exported to ONNX fp32 and int8 (``robot_exports`` in conftest.py,
parity gate on); a fixed sample of 200 held-out test commands (unseen templates, rooms,
devices and numbers; out-of-scope commands included) runs through torch and the runtime.
The floors sit a few points under the numbers measured on the same sample (the full test
split's numbers are in examples/robot_intent/README.md). Slow (real SmolLM2 base; a few
minutes), but part of ``make test``.
"""

from __future__ import annotations

import pytest

from examples.robot_intent import modeling
from examples.robot_intent.demo import CHECKPOINTS
from examples.robot_intent.evaluate import (
    agreement,
    eval_runtime,
    eval_torch,
    homes,
    load_torch,
    read_examples,
)
from examples.robot_intent.grammar import GRAMMAR_BEAMS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("robot_intent")]

N_COMMANDS = 200
#: Measured on this sample on 2026-12-01 and 2026-12-02 (AMD EPYC with AVX-512 VNNI;
#: onnxruntime 1.32, 1 thread) minus a margin for other int8 kernels (AVX2, NEON). Measured
#: (checkpoints gen-v7 and cls-v6, data v5): generation int8 intent EM 0.960, action EM
#: 0.780; with each command's grammar and 4 beams action EM 0.950 (area F1 0.992,
#: device-name F1 0.991), with the home grammar alone 0.885 (0.920, 0.942); int8 = fp32 on
#: 0.975 of commands; classification int8 accuracy 0.965, = fp32 1.000. Issue 12's targets
#: are higher in places; the gaps are in examples/robot_intent/README.md.
FLOORS = {
    "generation": {"intent_exact_match": 0.92, "action_exact_match": 0.74,
                   "grammar_action_exact_match": 0.91, "grammar_area_f1": 0.95,
                   "grammar_name_f1": 0.95, "int8_vs_fp32": 0.93},
    "classification": {"accuracy": 0.94, "int8_vs_fp32": 0.98},
}
#: Action EM the command grammar adds over the home grammar alone (measured +0.065).
MIN_NAMED_GAIN = 0.03
#: Out-of-scope commands answered with an action (23 in the sample). Measured: generation
#: 1 (0.043; none with the grammar), classification 2 (0.087); one more is allowed.
MAX_FALSE_ACCEPT = {"generation": 0.09, "classification": 0.14}
#: The attached model (torch base_shadow), measured: classification accuracy 0.955
#: (shadow_only 0.965 on this sample; 0.932 vs 0.965 on the full test split). The
#: generation checkpoint had no joint phase (see the README), so its attached model is the
#: plain base; test_the_generation_checkpoint_leaves_the_base_unchanged checks that.
ATTACHED_FLOORS = {"classification": 0.92}


@pytest.fixture(scope="module")
def sample(robot_base_dir):
    from transformers import AutoTokenizer

    examples, labels = read_examples("test", N_COMMANDS)
    return {"examples": examples, "labels": labels,
            "tokenizer": AutoTokenizer.from_pretrained(str(robot_base_dir))}


@pytest.fixture(scope="module", params=["generation", "classification"])
def task_results(request, sample, robot_exports, robot_base_dir):
    import torch

    torch.set_num_threads(1)
    task = request.param
    tok, labels, examples = sample["tokenizer"], sample["labels"], sample["examples"]
    model = load_torch(CHECKPOINTS[task], robot_base_dir, task)
    modes = ("shadow_only", "base_shadow") if task in ATTACHED_FLOORS else ("shadow_only",)
    torch_rows = {mode: eval_torch(model, tok, task, examples, labels, mode) for mode in modes}
    del model
    rows = {precision: eval_runtime(robot_exports[f"{task}-{precision}"], tok, task, examples,
                                    labels, f"ONNX {precision}", threads=1)
            for precision in ("fp32", "int8")}
    if task == "generation":
        home_list = homes(examples, "test")
        for key, per_command in (("grammar", True), ("home grammar", False)):
            rows[key] = eval_runtime(robot_exports[f"{task}-int8"], tok, task, examples, labels,
                                     f"ONNX int8 + {key}", threads=1, grammar_homes=home_list,
                                     num_beams=GRAMMAR_BEAMS, per_command=per_command)
    return task, torch_rows, rows


def test_checkpoints_are_fp16_adapters_with_the_base_recorded():
    import json

    from safetensors import safe_open

    for task, folder in CHECKPOINTS.items():
        config = json.loads((folder / "shadow_config.json").read_text())
        assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert config["task_type"] == ("CAUSAL_LM" if task == "generation" else "SEQ_CLS")
        with safe_open(str(folder / "shadow_adapter.safetensors"), "pt") as f:
            keys = list(f.keys())
            assert {str(f.get_slice(k).get_dtype()) for k in keys} == {"F16"}
        assert not any("embed_tokens" in k for k in keys)  # embeddings are the base's
        assert (folder / "shadow_adapter.safetensors").stat().st_size < 60_000_000


def test_exports_pass_the_parity_gate(robot_exports):
    for key, manifest in robot_exports["manifests"].items():
        assert manifest.precision == key.split("-")[1]
        assert manifest.verified is True and manifest.parity["passed"] is True


def test_int8_meets_the_floors(task_results):
    task, _, rows = task_results
    scores, floors = rows["int8"].scores, FLOORS[task]
    assert scores["n"] == N_COMMANDS
    for key in ("intent_exact_match", "action_exact_match", "accuracy"):
        if key in floors:
            assert scores[key] >= floors[key], (key, rows["int8"].summary())
    assert scores["false_accept_rate"] <= MAX_FALSE_ACCEPT[task], rows["int8"].summary()


def test_the_grammar_makes_actions_right_for_unseen_entities(task_results):
    task, _, rows = task_results
    if task != "generation":
        return
    scores, floors = rows["grammar"].scores, FLOORS[task]
    assert scores["action_exact_match"] >= floors["grammar_action_exact_match"]
    assert scores["action_exact_match"] >= rows["int8"].scores["action_exact_match"]
    # requiring the entities a command names helps over the home grammar alone
    home = rows["home grammar"].scores
    assert scores["action_exact_match"] >= home["action_exact_match"] + MIN_NAMED_GAIN
    for key in ("area", "name"):  # one command of slack for beam-search ties
        assert scores["slots"][key]["recall"] >= home["slots"][key]["recall"] - 0.02
    assert scores["slots"]["area"]["f1"] >= floors["grammar_area_f1"], scores["slots"]["area"]
    assert scores["slots"]["name"]["f1"] >= floors["grammar_name_f1"], scores["slots"]["name"]
    assert scores["invalid_intent_rate"] == 0.0
    assert scores["false_accept_rate"] <= MAX_FALSE_ACCEPT[task], rows["grammar"].summary()


def test_int8_outputs_equal_fp32_outputs(task_results):
    task, _, rows = task_results
    assert agreement(rows["int8"], rows["fp32"]) >= FLOORS[task]["int8_vs_fp32"]


def test_onnx_fp32_equals_torch_shadow_only(task_results):
    _, torch_rows, rows = task_results
    assert agreement(rows["fp32"], torch_rows["shadow_only"]) >= 0.99


def test_the_attached_model_meets_its_floor(task_results):
    """base_shadow on the same commands. Issue 12 asks for base_shadow >= shadow_only; met on
    this sample, not on the full test split (README), so this guards the measured level."""
    task, torch_rows, _ = task_results
    if task not in ATTACHED_FLOORS:
        return
    assert torch_rows["base_shadow"].primary >= ATTACHED_FLOORS[task], \
        torch_rows["base_shadow"].summary()


def test_the_generation_checkpoint_leaves_the_base_unchanged(robot_base_dir):
    """The generation shadow was trained alone (no joint phase): the injection's up
    projections are still their zero init, so attached (base_shadow) logits are the frozen
    base's own, to the last bit."""
    import torch
    from transformers import AutoModelForCausalLM

    model = load_torch(CHECKPOINTS["generation"], robot_base_dir, "generation")
    ups = model.peft_model.shadow_injection_model.injection_ups
    assert ups.abs().max().item() == 0.0
    base = AutoModelForCausalLM.from_pretrained(str(robot_base_dir), dtype=torch.float32).eval()
    ids = torch.tensor([[1, 9690, 198, 19556, 30, 2, 2]])
    model.set_inference_mode("base_shadow")
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_runtime_chat_template_gives_the_training_prompt_ids(robot_exports, sample):
    import runtime

    model = runtime.load(robot_exports["generation-int8"], threads=1)
    for e in sample["examples"][:10]:
        ids = model.apply_chat_template(modeling.messages_for(e.text))
        assert ids == modeling.prompt_ids(sample["tokenizer"], e.text)


def test_app_acts_only_on_the_home_s_entities(robot_exports):
    """The app on commands about rooms and devices of home.json that no training command names.

    With the grammar every action names only the home's entities, and those the command
    names; without it, an action naming an entity the home lacks is refused before a
    handler runs. Issue 12's example "turn on the lights in the nursery" is right in both
    modes; "set the brightness in the study to 30%" keeps its room with the grammar (free
    decoding leaves it out).
    """
    from examples.robot_intent.app import Action, RobotApp

    commands = ["set the chapel thermostat to 19 degrees", "start a timer for 12 minutes",
                "what is the capital of france", "turn on the lights in the nursery",
                "set the brightness in the study to 30%"]
    app = RobotApp(str(robot_exports["generation-int8"]), threads=1, grammar=True)
    results = app(commands)
    actions = [action for _, action, _ in results]
    assert actions[0] == Action("HassClimateSetTemperature",
                                {"name": "chapel thermostat", "temperature": "19"})
    assert actions[1] == Action("HassStartTimer", {"minutes": "12"})
    assert actions[2] == Action("none")
    assert actions[3] == Action("HassTurnOn", {"area": "nursery", "domain": "light"})
    assert actions[4] == Action("HassLightSet",
                                {"area": "study", "brightness": "30", "domain": "light"})
    assert not any(result.startswith("refused") for _, _, result in results)

    free = RobotApp(str(robot_exports["generation-int8"]), threads=1, grammar=False)
    free_results = free(commands)
    assert [a.intent for _, a, _ in free_results] == [a.intent for a in actions]
    assert free_results[3][1] == actions[3]
    for _, action, result in free_results:
        assert result.startswith("refused") == bool(free.unknown_entities(action))

    classifier = RobotApp(str(robot_exports["classification-int8"]), threads=1)
    assert [a.intent for _, a, _ in classifier(commands)] == [a.intent for a in actions]
