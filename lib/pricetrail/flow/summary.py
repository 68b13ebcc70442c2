"""What a run reports: one summary row per product, ``logs/last-run.json`` and each product's full log, and the
fleet's summary a person reads when the products are hundreds."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricetrail.flow.chains import CHAIN

LOGS = Path("logs")
# Above this many products the terminal gets the fleet's summary, not a row per product (logs/last-run.json has them).
TABLE_LIMIT = 40
# The checks named in a gate failure's reason: "model v failed its gate: name=value (threshold t); name=value ...".
_GATE_CHECK = re.compile(r"(?:failed its gate: |\); )([a-z][a-z0-9_]*)=")


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


def fleet_report(rows: list[dict[str, Any]], slowest: int = 5) -> list[str]:
    """A run over a catalogue in a few lines: the products by result, by decision, by the stage they failed at and
    by the gate check that kept their model out; the slowest; then every failure with its one-line reason."""
    if not rows:
        return []
    results = Counter(str(row["result"]) for row in rows)
    actions = Counter(str(row["decision"]).split(":", 1)[0] or "no decision" for row in rows)
    stages = Counter(str(row["failed stage"]) for row in rows if row["failed stage"])
    checks = Counter(name for row in rows for name in set(_GATE_CHECK.findall(str(row["decision"]))))

    def counted(counter: Counter[str]) -> str:
        return ", ".join(f"{count} {name}" for name, count in sorted(counter.items(), key=lambda i: (-i[1], i[0])))

    lines = [f"{len(rows)} products: {counted(results)}", f"decisions: {counted(actions)}"]
    if stages:
        lines.append(f"failed at: {counted(stages)}")
    if checks:
        lines.append(f"gate checks that kept a model out: {counted(checks)}")
    slow = sorted(rows, key=lambda row: (-float(row["seconds"]), str(row["product"])))[:slowest]
    lines.append("slowest: " + ", ".join(f"{row['product']} {float(row['seconds']):.1f} s" for row in slow))
    failures = [row for row in rows if row["result"] == "failed"]
    if failures:
        lines.append(f"failures ({len(failures)}):")
        lines.extend(f"  {row['product']}: {row['failed stage']}: {row['reason']}" for row in failures)
    return lines
