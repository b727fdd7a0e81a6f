"""Comparing trained weights with weights pinned by an earlier gantrain, on any CPU.

A pin is exact only on a machine where it is known to reproduce bit for bit: the same torch build, CPU
capability, processor and thread count as one listed in the pin folder's `exact_on.json`. Elsewhere
CPU reductions round differently (AVX-512 against AVX2 kernels, another thread count), so the weights
are compared within a tolerance: rounding moved them by at most 3e-5 on the machines seen (AVX2 and AVX-512
CPUs, 1 or 2 threads), while a real change of the training math moves them by more than the tolerance
(tests/test_pinned.py plants a sign, a formula and the order of the updates: 2e-4 to 30 apart).
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

#: the tolerance where the pin is not exact: a real change exceeds it (test_pinned's planted changes)
RTOL, ATOL = 1e-4, 1e-4


def processor() -> str:
    """The CPU as its kernels see it: vendor, family, model, stepping, cache and a digest of its feature flags
    (virtual machines often name every processor alike, so the name alone does not tell two apart)."""
    import hashlib

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "model name", "cpu family", "model", "stepping", "cache size", "flags"):
                fields.setdefault(key, value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = hashlib.sha256(" ".join(sorted(fields.pop("flags", "").split())).encode()).hexdigest()[:12]
    return " / ".join(fields.values()) + f" / flags {flags}"


def this_machine() -> dict:
    """What decides CPU rounding here: torch build, CPU capability, processor, threads."""
    return {"torch": str(torch.__version__), "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "processor": processor(), "threads": torch.get_num_threads()}


def exact_here(pin_folder: Path) -> bool:
    """True when this machine is one on which the pins of pin_folder were seen to reproduce bit for bit."""
    listed = pin_folder / "exact_on.json"
    machines = json.loads(listed.read_text()) if listed.is_file() else []
    return this_machine() in machines


def weight_mismatches(got: dict, want: dict, exact: bool) -> list[str]:
    """The weights of got (network -> name -> tensor) that differ from want's: exactly, or beyond the tolerance."""
    bad = []
    if set(got) != set(want):
        return [f"networks {sorted(got)} != {sorted(want)}"]
    for net in want:
        if list(got[net]) != list(want[net]):
            bad.append(f"{net}: parameter names differ")
            continue
        for key, value in want[net].items():
            mine = got[net][key]
            same = torch.equal(mine, value) if exact else torch.allclose(mine, value, rtol=RTOL, atol=ATOL)
            if not same:
                bad.append(f"{net}.{key} (max abs difference {float((mine.double() - value.double()).abs().max()):.3g})")
    return bad


def assert_matches_pin(got: dict, want: dict, pin_folder: Path) -> None:
    """Fail naming the weights that differ from the pinned ones (exactly where the pin is exact here)."""
    exact = exact_here(pin_folder)
    bad = weight_mismatches(got, want, exact)
    how = "bit for bit" if exact else f"within rtol {RTOL}, atol {ATOL}"
    assert not bad, f"weights differ from the pinned ones ({how}): {', '.join(bad[:5])}"
