"""What is recorded about the machine: the CPU's matrix capabilities come from the kernel, never assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    assert env["cpu_native_bf16"] == bool({"avx512_bf16", "amx_bf16"} & kernel)


@pytest.mark.parametrize(("flags", "native"), [
    (["avx2", "avx512f"], False), (["avx512f", "avx512_bf16"], True), (["amx_tile", "amx_bf16"], True), ([], False),
])
def test_native_bf16_needs_avx512_bf16_or_amx(flags: list[str], native: bool) -> None:
    assert native_bf16(flags) is native
