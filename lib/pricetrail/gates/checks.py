"""A gate's checks and its verdict.

Every check blocks: any failed check means the model is not promoted, for the scope the check covers (the
model, one customer group, or the comparison between groups). A check that cannot be computed fails (its value
is ``None``); it never passes silently."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


MODEL_SCOPE = "model"
BETWEEN_SCOPE = "between"


def group_scope(name: str) -> str:
    return f"group:{name}"


@dataclass(frozen=True)
class Check:
    """One gate check; ``value`` is ``None`` when it could not be computed (and then it cannot pass)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    comparison: str
    detail: str
    # Whom a failure blocks: "model" (every customer group), "group:<name>" (that group only), or "between"
    # (every group it compares). See verdict().
    scope: str = MODEL_SCOPE

    def __post_init__(self) -> None:
        # Coerce numpy scalars so to_dict() yields plain JSON types, and refuse NaN/inf: JSON has no such
        # values and "could not be computed" is spelled None.
        object.__setattr__(self, "passed", bool(self.passed))
        for field in ("value", "threshold"):
            raw = getattr(self, field)
            if raw is None:
                continue
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError(
                    f"check {self.name!r}: {field}={raw!r} is not accepted; use a finite number or None"
                )
            object.__setattr__(self, field, number)
        if self.passed and self.value is None:
            raise ValueError(
                f"check {self.name!r} cannot pass without a value; a check with value None must fail"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "detail": self.detail,
            "scope": self.scope,
        }


def verdict(checks: Sequence[Check]) -> dict[str, Any]:
    """The gate's decision from its checks; no checks is an error.

    Without group-scoped checks: ``{"passed": all passed, "failed_checks", "checks"}``. With them, also
    ``"groups"``: each group is servable when no check of scope model or between failed and none of its own did;
    the model passes (is promoted) when at least one group is servable, and serves only those.
    """
    checks = list(checks)
    if not checks:
        # all([]) is True: an empty list must never promote a model.
        raise ValueError("verdict needs at least one Check; got none")
    wrong = [type(c).__name__ for c in checks if not isinstance(c, Check)]
    if wrong:
        raise ValueError(f"verdict accepts only Check objects; got {wrong}")
    failed = [c.name for c in checks if not c.passed]
    result: dict[str, Any] = {
        "passed": not failed,
        "failed_checks": failed,
        "checks": [c.to_dict() for c in checks],
    }
    names = sorted({c.scope.split(":", 1)[1] for c in checks if c.scope.startswith("group:")})
    if names:
        shared = [c for c in checks if not c.passed and not c.scope.startswith("group:")]
        groups = {}
        for name in names:
            own = [c for c in checks if c.scope == group_scope(name) and not c.passed]
            blocking = shared + own
            groups[name] = {"servable": not blocking, "failed_checks": [c.name for c in blocking],
                            "reason": "; ".join(c.detail for c in blocking)}
        result["groups"] = groups
        result["passed"] = any(entry["servable"] for entry in groups.values())
    if result["passed"]:
        logger.info("promotable (%s)", ", ".join(name for name, e in result.get("groups", {}).items()
                                                  if e["servable"]) or f"all {len(checks)} checks passed")
    else:
        logger.info("model not promoted; failed checks: %s", ", ".join(failed))
    return result
