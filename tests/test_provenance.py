"""What is recorded about the machine: the CPU's matrix capabilities come from the kernel, never assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel_vision import provenance
from parallel_vision.engines import levers
from parallel_vision.provenance import MATRIX_FLAGS, cpu_flags, host_environment, native_bf16


def _kernel_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("no flags line in /proc/cpuinfo")


def test_recorded_cpu_flags_are_exactly_the_kernels_matrix_features() -> None:
    kernel = _kernel_flags()
    assert cpu_flags() == [f for f in MATRIX_FLAGS if f in kernel]
    env = host_environment()
    assert env["cpu_flags"] == cpu_flags()
    assert env["cpu_native_bf16"] == bool({"avx512_bf16", "amx_bf16"} & kernel)  # an x86 flags line


@pytest.mark.parametrize(("cpuinfo", "native"), [
    ("flags\t: fpu avx2 avx512f\n", False), ("flags\t: avx512f avx512_bf16\n", True),
    ("flags\t: amx_tile amx_bf16\n", True), ("", False),
    ("processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16 svebf16\n", True),  # ARM's BF16 extension
    ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\n", False),
])
def test_native_bf16_needs_avx512_bf16_amx_or_arm_bf16(cpuinfo: str, native: bool) -> None:
    assert native_bf16(cpuinfo) is native


def test_precision_auto_and_the_record_agree_on_an_arm_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--precision auto` picks bf16 on an ARM CPU with BF16, and result.json then records cpu_native_bf16:
    true (the two once asked different functions, and the record said false)."""
    arm = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd atomics sve i8mm bf16 svebf16\n"
    real_features = provenance.cpu_features
    monkeypatch.setattr(provenance, "cpu_features", lambda cpuinfo=None: real_features(arm if cpuinfo is None
                                                                                        else cpuinfo))
    assert levers.auto_precision("torch", on_gpu=False)[0] == "bf16"
    assert levers.bf16_refusal(on_gpu=False) is None
    assert host_environment()["cpu_native_bf16"] is True
    assert host_environment()["cpu_flags"] == []  # the recorded list stays x86's matrix features
