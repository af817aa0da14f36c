"""Write the results: raw JSON for tools, a Markdown table (with targets) for people."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from bench.metrics import INFO, MetricInfo

if TYPE_CHECKING:
    from pathlib import Path

MARK = {True: "✅ met", False: "❌ missed", None: "- n/a"}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def cell(info: MetricInfo, kernel: str, summaries: dict[str, Any]) -> str:
    """``median [min-max] xratio``, or the notes (timeout, n/a, ...) when there is no number."""
    s = summaries.get(kernel, {}).get(info.key)
    if s is None:
        return ""
    if info.unit == "bool":
        text = "" if "all_true" not in s else ("yes" if s["all_true"] else "**no**")
    elif "median" in s:
        text = fmt(s["median"])
        if s["min"] != s["max"]:
            text += f" [{fmt(s['min'])}-{fmt(s['max'])}]"
        ref = summaries.get(info.reference or "", {}).get(info.key, {}).get("median")
        if ref and kernel != info.reference:
            text += f" x{s['median'] / ref:.2f}"
    else:
        text = ""
    notes = [n for n in s.get("notes", []) if text or n]
    return "; ".join([t for t in (text, *notes) if t])


def markdown(data: dict[str, Any]) -> str:
    kernels: list[str] = data["kernels_run"]
    summaries = {k: v["summary"] for k, v in data["kernels"].items()}
    out = ["# Benchmark results", ""]
    cfg = data["config"]
    out += [f"Generated {data['generated']} by `{data['command']}`; {cfg['repeats']} repeat(s),"]
    out += ["kernels interleaved round-robin. Cells: median [min-max] over repeats,"]
    out += ["then x ratio of medians to the reference kernel (column `ref`)."]
    out += ["", "## Machine", ""]
    out += [f"- **{k}**: {v}" for k, v in data["machine"].items()]
    out += [f"- **packages**: {', '.join(f'{k} {v}' for k, v in data['packages'].items())}", ""]
    out += ["## Results", ""]
    out += ["| metric | unit | ref | " + " | ".join(kernels) + " |"]
    out += ["|---|---|---|" + "---|" * len(kernels)]
    for info in INFO:
        row = [info.label, info.unit, info.reference or ""]
        row += [cell(info, k, summaries) for k in kernels]
        out.append("| " + " | ".join(row) + " |")
    judged = [k for k in kernels if k != "floor"]
    out += ["", "## Targets", "", "| target | " + " | ".join(judged) + " |"]
    out += ["|---|" + "---|" * len(judged)]
    for row in data["targets"]:
        cells = []
        for k in judged:
            r = row["results"].get(k)
            if r is None:
                cells.append("")
            else:
                value = r["value"]
                cells.append(MARK[r["met"]] + (f" ({value})" if value != "n/a" else ""))
        out.append(f"| {row['target']} | " + " | ".join(cells) + " |")
    failures = {k: v["failed"] for k, v in data["kernels"].items() if v["failed"]}
    if failures:
        out += ["", "## Failures", ""]
        for kernel, reasons in failures.items():
            out += [f"- **{kernel}**: {reason}" for reason in dict.fromkeys(reasons)]
    return "\n".join(out) + "\n"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
