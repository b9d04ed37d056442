"""How a run was computed: the CPU kernels torch and numpy dispatched to, their versions, the CPU.

The same params, seed and thread count give the same metrics only where the
arithmetic is the same. torch picks its CPU kernels at start-up from what the
CPU offers (`ATEN_CPU_CAPABILITY` caps it): AVX-512, AVX2 or the default
kernels sum in different orders, so the same run on two CPUs can end a point
apart. `environment` records what a run used, in details.json and the results
table, so that runs computed differently are never compared silently.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch

CPU_INFO = Path("/proc/cpuinfo")


def numpy_simd() -> str:
    """The highest SIMD target numpy dispatches to on this CPU (`AVX512_SPR`, `AVX2`, ...), or `baseline`.

    numpy's optional kernels are compiled for a list of targets, lowest first; a
    target runs when the CPU has it and `NPY_DISABLE_CPU_FEATURES` does not turn it off.
    """
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    usable = [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]
    return usable[-1] if usable else "baseline"


def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo` on Linux), else the platform's processor or machine."""
    if CPU_INFO.exists():
        for line in CPU_INFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """What computed this run: torch's CPU capability, numpy's SIMD level, both versions and the CPU."""
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_simd": numpy_simd(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "cpu_model": cpu_model(),
    }
