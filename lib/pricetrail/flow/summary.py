"""What a run reports: one summary row per product, ``logs/last-run.json`` and each product's full log."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricetrail.flow.chains import CHAIN

LOGS = Path("logs")


@dataclass
class ProductSummary:
    code: str
    ran: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    rechecked: list[str] = field(default_factory=list)  # drift gates re-checked after promotion
    failed_stage: str | None = None
    reason: str | None = None
    decision: str = ""
    served_version: str | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        verdict = "failed" if self.failed_stage else "ok"
        return {"product": self.code, "stages run": len(self.ran), "from run-cache": len(self.restored),
                "skipped": len(CHAIN) - len(self.ran) - len(self.restored), "re-checked": len(self.rechecked),
                "result": verdict,
                "failed stage": self.failed_stage or "", "reason": self.reason or "", "decision": self.decision,
                "served version": self.served_version or "-", "seconds": round(self.seconds, 1),
                "stage seconds": round(sum(self.stage_seconds.values()), 1)}


def write_summary(root: Path, rows: list[dict[str, Any]], stage_seconds: dict[str, dict[str, float]]) -> None:
    """logs/last-run.json: the summary table and every stage's time, for scripts (and the benchmarks)."""
    from pricetrail.project.files import write_json

    write_json(root / LOGS / "last-run.json", {"rows": rows, "stage_seconds": stage_seconds})


def write_log(root: Path, code: str, text: str) -> None:
    from pricetrail.project.files import atomic_path

    with atomic_path(root / LOGS / f"{code}.log") as tmp:
        tmp.write_text(text, encoding="utf-8")
