"""safe_import.import_class: config strings import only transformers classes by default."""

from __future__ import annotations

import pytest
import transformers

from shadow_edge.errors import ConfigError
from shadow_edge.safe_import import import_class, split_class_spec


class LocalTestConfig(transformers.PretrainedConfig):
    """A class outside transformers, importable as tests.core.test_safe_import:LocalTestConfig."""

    model_type = "shadow_edge_safe_import_test"


class TestAllowed:
    def test_colon_form_imports_transformers_class(self):
        cls = import_class("transformers.models.llama.modeling_llama:LlamaModel")
        assert cls is transformers.LlamaModel

    def test_dotted_form_imports_transformers_class(self):
        cls = import_class("transformers.models.qwen3.configuration_qwen3.Qwen3Config")
        assert cls is transformers.Qwen3Config

    def test_top_level_reexport_is_allowed(self):
        # transformers' lazy top-level module re-exports classes defined in its submodules
        assert import_class("transformers:GPT2Model") is transformers.GPT2Model

    def test_expected_base_accepts_subclass(self):
        cls = import_class(
            "transformers.models.llama.configuration_llama:LlamaConfig",
            expected_base=transformers.PretrainedConfig,
        )
        assert cls is transformers.LlamaConfig

    def test_trust_remote_code_allows_other_module(self):
        cls = import_class(
            "tests.core.test_safe_import:LocalTestConfig",
            trust_remote_code=True,
            expected_base=transformers.PretrainedConfig,
        )
        assert cls is LocalTestConfig


class TestRefused:
    @pytest.mark.parametrize(
        "spec", ["os:system", "builtins:eval", "subprocess.Popen", "transformers_evil:Model"]
    )
    def test_outside_transformers_is_refused_with_the_fix(self, spec):
        with pytest.raises(ConfigError) as info:
            import_class(spec)
        message = str(info.value)
        assert repr(spec) in message
        assert "trust_remote_code=True" in message

    def test_local_module_refused_without_trust(self):
        with pytest.raises(ConfigError, match="trust_remote_code=True"):
            import_class("tests.core.test_safe_import:LocalTestConfig")

    def test_reexported_foreign_class_is_refused(self):
        # transformers.modeling_utils imports threading.Thread; a config must not reach it
        with pytest.raises(ConfigError, match="outside the transformers package"):
            import_class("transformers.modeling_utils:Thread")

    def test_module_traversal_is_refused(self):
        # "os" is a module attribute of transformers.modeling_utils, not a class
        with pytest.raises(ConfigError, match="does not name a class"):
            import_class("transformers.modeling_utils:os.system")

    def test_function_is_refused(self):
        with pytest.raises(ConfigError, match="does not name a class"):
            import_class("transformers:pipeline")

    @pytest.mark.parametrize(
        "spec", ["transformers:NoSuchModel", "transformers.models.no_such_arch.modeling:X"]
    )
    def test_nonexistent_is_refused(self, spec):
        with pytest.raises(ConfigError) as info:
            import_class(spec)
        assert repr(spec) in str(info.value)

    def test_wrong_base_is_refused(self):
        with pytest.raises(ConfigError, match=f"not a subclass of {transformers.PretrainedConfig.__name__}"):
            import_class(
                "transformers.models.llama.modeling_llama:LlamaModel",
                expected_base=transformers.PretrainedConfig,
            )

    @pytest.mark.parametrize("spec", ["", "LlamaModel", "a:b:c", "transformers:1abc", None])
    def test_malformed_is_refused(self, spec):
        with pytest.raises(ConfigError):
            import_class(spec)


def test_split_class_spec_forms():
    assert split_class_spec("a.b:C") == ("a.b", "C")
    assert split_class_spec("a.b.C") == ("a.b", "C")
    assert split_class_spec("a.b:Outer.Inner") == ("a.b", "Outer.Inner")
