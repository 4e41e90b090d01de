"""Runtime test fixtures, read from the committed fixture folder: no torch needed.

``tests/runtime/fixtures/data`` holds tiny export folders, SmolLM2's tokenizer and the
outputs torch and transformers gave for the tests' inputs; ``python -m
tests.runtime.fixtures.build`` makes it (see ``tests/runtime/fixtures/__init__.py``). Each
test session works on a private copy, so tests may edit what they are given.

Fixtures that need torch say so by skipping without it: ``torch_lm``, ``torch_classifier``
and the torch sources ``exports["source"]``, ``exports["cls_source"]`` (rebuilt from the
fixture recipe on first use). ``hf_smollm2_tokenizer`` is transformers' tokenizer where
transformers is installed (checked against the recording) and the recording where not.
"""

from __future__ import annotations

import os

import pytest

from tests.runtime import fixtures
from tests.runtime.fixtures.recorded import RecordedTokenizer

RECORDING = os.environ.get(fixtures.RECORD_ENV) == "1"
HF_TOKENIZER = "hf_smollm2_tokenizer"


def pytest_collection_modifyitems(config, items):
    """In the builder's record run, run only the tests that ask transformers something."""
    if not RECORDING:
        return
    keep = [item for item in items if HF_TOKENIZER in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture(scope="session")
def runtime_fixtures(tmp_path_factory):
    """A private copy of the fixture folder (path)."""
    return fixtures.copy_to(tmp_path_factory.mktemp("runtime-fixtures"))


@pytest.fixture(scope="session")
def fixture_references(runtime_fixtures) -> dict:
    """torch's outputs recorded with the fixtures (``fixtures.load_references``)."""
    return fixtures.load_references(runtime_fixtures)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(runtime_fixtures):
    """An HF tokenizer folder of SmolLM2-135M-Instruct (tokenizer.json, chat_template.jinja)."""
    return runtime_fixtures / "smollm2"


@pytest.fixture(scope="session")
def hf_smollm2_tokenizer(smollm2_tokenizer_dir):
    """transformers' SmolLM2 tokenizer: live and checked against the recording, or replayed."""
    path = fixtures.folder() / fixtures.TRANSFORMERS_FILE
    try:
        from transformers import AutoTokenizer
    except ImportError:
        yield RecordedTokenizer.load(path, "replay")
        return
    live = AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))
    tokenizer = RecordedTokenizer.load(path, "record" if RECORDING else "check", live)
    yield tokenizer
    if RECORDING:
        tokenizer.save(path)


class Exports(dict):
    """Export folders by fixture name, plus the torch sources built on first use.

    ``exports["source"]``, ``exports["cls_source"]``, ``exports["padded_source"]`` (HF
    folders of the models behind ``fp32``/``int8``/``int4``, ``cls`` and ``padded``) are
    rebuilt from the recipe; the test skips without torch. ``test_fixtures`` checks they are the models that were exported.
    """

    def __init__(self, folders: dict, work):
        super().__init__(folders)
        self.work = work

    def __missing__(self, key):
        from tests.runtime.fixtures.build import SOURCES

        if key not in SOURCES:
            raise KeyError(key)
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
        self[key] = SOURCES[key](self.work / key)
        return self[key]


@pytest.fixture(scope="session")
def exports(runtime_fixtures, tmp_path_factory):
    """Export folders (paths): "fp32" (with model.ort), "int8", "int4", "cls", "adapter",
    "padded" (300 logits, 259 token ids); the torch sources "source", "cls_source" and
    "padded_source" need torch. Quantized folders, "cls" and "padded" are not verified by the
    parity gate (the exporter's own tests cover it); here they only need to load and run."""
    names = ("fp32", "int8", "int4", "cls", "adapter", "padded")
    return Exports({name: runtime_fixtures / name for name in names},
                   tmp_path_factory.mktemp("runtime-sources"))


@pytest.fixture(scope="session")
def generator(exports):
    import runtime

    return runtime.load(exports["fp32"], threads=1)


@pytest.fixture(scope="session")
def classifier(exports):
    import runtime

    return runtime.load(exports["cls"], threads=1)


@pytest.fixture(scope="session")
def torch_lm(exports):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(str(exports["source"])).eval()


@pytest.fixture(scope="session")
def torch_classifier(exports):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForSequenceClassification.from_pretrained(
        str(exports["cls_source"])).eval()
