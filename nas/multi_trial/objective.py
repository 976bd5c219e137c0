"""What a multi-trial search maximises, from a trained trial's mIoU and latency.

``fasterseg`` is FasterSeg's selection rule, mIoU × (latency / target)^-0.07: at the target latency the
mIoU itself; 10 % slower costs 0.7 % of it, 10 % faster gains 0.7 %. ``miou`` ignores latency (inside the band).
"""

from __future__ import annotations

from terralite.errors import TerraLiteError

LATENCY_EXPONENT = -0.07

OBJECTIVES = {
    "fasterseg": lambda miou, latency_ms, target_ms: miou * (latency_ms / target_ms) ** LATENCY_EXPONENT,
    "miou": lambda miou, latency_ms, target_ms: miou,
}


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise TerraLiteError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
    return name


def objective(name: str, miou: float, latency_ms: float, target_ms: float) -> float:
    """The objective ``name`` of a trial (higher is better)."""
    return float(OBJECTIVES[check_objective(name)](miou, latency_ms, target_ms))
