"""CPU features in parity reports, and the one-time warning for dynamic int8 on x86 without VNNI."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

import runtime
from runtime import cpu

pytestmark = pytest.mark.xdist_group("runtime")

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2
"""
XEON = EPYC.replace("AMD EPYC 7B13", "Intel Xeon Platinum").replace(
    "bmi2", "avx512f avx512bw avx512vl avx512_vnni")
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
"""


def test_cpuinfo_flags_of_x86_and_arm():
    model, flags, key = cpu.parse_cpuinfo(EPYC)
    assert (model, key) == ("AMD EPYC 7B13", "flags")
    assert flags == {"fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma",
                     "f16c", "bmi2"}
    model, flags, key = cpu.parse_cpuinfo(PI5)
    assert model is None and key == "features" and {"asimd", "asimddp", "fphp"} <= flags
    assert cpu.parse_cpuinfo("") == (None, set(), None)


def test_flags_come_from_run_time_detection_then_cpuinfo(monkeypatch):
    """Why: under qemu -cpu Haswell /proc/cpuinfo is the host's, CPUID (numpy) is the guest's."""
    monkeypatch.setattr(cpu, "_numpy_flags", lambda: frozenset({"avx", "avx2", "fma"}))
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: (
        "Xeon", frozenset({"avx", "avx2", "avx512f", "avx512_vnni", "amx_int8", "bmi2"})))
    assert cpu.cpu_flags() == ["amx_int8", "avx", "avx2", "fma"]  # amx: numpy does not track it
    monkeypatch.setattr(cpu, "_numpy_flags", lambda: None)
    assert cpu.cpu_flags() == ["amx_int8", "avx", "avx2", "avx512_vnni", "avx512f"]


def test_only_x86_without_vnni_can_saturate():
    assert cpu.int8_can_saturate("x86_64", cpu.parse_cpuinfo(EPYC)[1])
    assert not cpu.int8_can_saturate("x86_64", cpu.parse_cpuinfo(XEON)[1])
    assert not cpu.int8_can_saturate("x86_64", {"avx2", "avx_vnni"})  # Alder Lake and later
    assert not cpu.int8_can_saturate("aarch64", cpu.parse_cpuinfo(PI5)[1])


def test_platform_record_names_this_machine():
    record = cpu.platform_record()
    assert set(record) == {"machine", "cpu", "cpu_flags", "onnxruntime", "python"}
    assert record["onnxruntime"] == __import__("onnxruntime").__version__
    assert set(record["cpu_flags"]) <= set(cpu.RELEVANT_FLAGS)
    json.dumps(record)  # it goes into the manifest


def test_which_exports_hold_dynamic_int8():
    assert cpu.uses_dynamic_int8("int8", None)  # written before the quantization record
    assert cpu.uses_dynamic_int8("int8", {"method": "quantize_dynamic"})
    assert not cpu.uses_dynamic_int8("int8", {"method": "MatMulNBits", "bits": 8})
    assert not cpu.uses_dynamic_int8("int4", None)
    assert not cpu.uses_dynamic_int8("fp32", None)


@pytest.fixture
def saturating_cpu(monkeypatch):
    monkeypatch.setattr(cpu, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: ["avx", "avx2", "fma"])
    monkeypatch.setattr(cpu, "_warned", set())


def test_loading_an_old_dynamic_int8_export_warns_once(exports, tmp_path, saturating_cpu,
                                                       caplog):
    """Why: an export from before the block-wise int8 silently loses accuracy on such CPUs."""
    old = shutil.copytree(exports["int8"], tmp_path / "old-int8")
    manifest_path = old / "shadow_edge.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["quantization"]
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="runtime.cpu"):
        runtime.load(exports["int8"], threads=1)
        assert not caplog.records  # block-wise int8: exact on every CPU, no warning
        runtime.load(old, threads=1)
        runtime.load(old, threads=1)
    assert len(caplog.records) == 1
    assert "no VNNI" in caplog.text and "--int8" in caplog.text


def test_no_warning_where_vnni_exists(monkeypatch):
    monkeypatch.setattr(cpu, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: ["avx2", "avx512_vnni", "avx512f"])
    monkeypatch.setattr(cpu, "_warned", set())
    assert cpu.warn_if_int8_can_saturate("int8", None, "out") is False
