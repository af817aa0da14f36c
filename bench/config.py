"""Run parameters; ``--quick`` shrinks them for a smoke test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    repeats: int = 5  # a launch lands in one of two timing modes on a small VM: more, steadier
    roundtrip_n: int = 300
    throughput_n: int = 1000
    print_lines: int = 100_000
    progress_updates: int = 10_000
    load_sleep: float = 2.0  # seconds the busy cell awaits / blocks while we probe
    comm_timeout: float = 5.0
    interrupt_timeout: float = 10.0
    start_timeout: float = 30.0
    work_dir: Path = Path("bench/results")

    @classmethod
    def quick(cls, **overrides: object) -> Config:
        base = {
            "repeats": 1,
            "roundtrip_n": 50,
            "throughput_n": 200,
            "print_lines": 20_000,
            "progress_updates": 2_000,
        }
        return cls(**(base | overrides))  # type: ignore[arg-type]
