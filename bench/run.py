"""Run the benchmark: every selected kernel once per repeat, round-robin, then report.

Usage: ``python -m bench [--quick] [--repeats N] [--kernels floor,ipykernel,...]``
(or ``python bench/run.py ...``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine, report
from bench.config import Config
from bench.kernels import BENCH_DIR, KERNELS, OPTIONAL_KERNELS, REPO_ROOT, KernelDef
from bench.metrics import (
    blocked,
    buffers,
    comm_deadlock,
    interrupt,
    prints,
    progress,
    responsiveness,
    roundtrip,
    startup,
    threads,
    throughput,
)
from bench.session import BenchTimeout, KernelFailed, KernelSession
from bench.stats import Value, summarize
from bench.targets import evaluate

Measure = Callable[[KernelSession, Config], dict[str, Value]]

# Order matters: the last two may leave a kernel wedged (a fresh one is started if so).
METRICS: tuple[tuple[str, Measure, tuple[str, ...], bool], ...] = (
    ("roundtrip", roundtrip.measure, ("rt_median_ms", "rt_p99_ms"), False),
    ("throughput", throughput.measure, throughput.KEYS, False),
    ("prints", prints.measure, ("print_s", "print_lines", "print_in_order"), True),
    ("progress", progress.measure, ("progress_s", "progress_widget"), True),
    (
        "responsiveness",
        responsiveness.measure,
        (
            *tuple(f"{p}_{s}_ms" for p in responsiveness.SHELL_PROBES for s in ("idle", "load")),
            "control_idle_ms",
            "control_blocked_ms",
        ),
        True,
    ),
    ("blocked", blocked.measure, blocked.KEYS, True),
    ("threads", threads.measure, threads.KEYS, True),
    ("interrupt", interrupt.measure, ("interrupt_sync_ms", "interrupt_async_ms"), True),
    ("comm", comm_deadlock.measure, ("comm_release_ms",), True),
    ("buffers", buffers.measure, buffers.KEYS, True),
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_once(
    kdef: KernelDef, cfg: Config, repeat: int, only: set[str] | None = None
) -> dict[str, Value]:
    """Start one kernel, run every metric (or those in ``only``) on it, stop it.

    Raises ``KernelFailed``.
    """
    logs = cfg.work_dir / "logs"
    session, results = startup.launch(kdef, cfg, logs / f"{kdef.name}-{repeat}.log")
    try:
        for name, measure, keys, needs_exec in METRICS:
            if only is not None and name not in only:
                continue
            if needs_exec and not kdef.executes:
                results |= dict.fromkeys(keys, "n/a")
                continue
            if not session.responsive():
                log(f"  {kdef.name}: unresponsive before {name}; starting a fresh kernel")
                session.close()
                session, _ = KernelSession.launch(
                    kdef,
                    cfg.work_dir / "specs",
                    logs / f"{kdef.name}-{repeat}-{name}.log",
                    cfg.start_timeout,
                )
            t0 = time.perf_counter()
            try:
                results |= measure(session, cfg)
            except BenchTimeout as exc:
                log(f"  {kdef.name} {name}: {exc}")
                results |= dict.fromkeys(keys, "timeout")
            except KernelFailed:
                raise
            except Exception as exc:  # one broken metric must not sink the run
                log(f"  {kdef.name} {name}: {type(exc).__name__}: {exc}")
                results |= dict.fromkeys(keys, f"error: {type(exc).__name__}")
            log(f"  {kdef.name} {name}: {time.perf_counter() - t0:.1f} s")
    finally:
        session.close()
    return results


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, small N: a smoke test")
    parser.add_argument("--repeats", type=int, help="rounds over all kernels (default 5; quick 1)")
    parser.add_argument(
        "--kernels",
        default=",".join(KERNELS),
        help="comma-separated subset of: "
        + ", ".join(KERNELS)
        + "; also the opt-in "
        + ", ".join(OPTIONAL_KERNELS)
        + " (see bench/kernels.py)",
    )
    parser.add_argument(
        "--metrics",
        help="comma-separated subset of: "
        + ", ".join(m[0] for m in METRICS)
        + " (default all; start-up is always measured)",
    )
    parser.add_argument("--roundtrip-n", type=int, help="sequential executes (default 300)")
    parser.add_argument("--throughput-n", type=int, help="back-to-back executes (default 1000)")
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results", help="JSON, logs and specs"
    )
    parser.add_argument("--markdown", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args(argv)
    unknown = set(args.kernels.split(",")) - set(KERNELS) - set(OPTIONAL_KERNELS)
    if unknown:
        parser.error(f"unknown kernels: {', '.join(sorted(unknown))}")
    unknown = set((args.metrics or "").split(",")) - {m[0] for m in METRICS} - {""}
    if unknown:
        parser.error(f"unknown metrics: {', '.join(sorted(unknown))}")
    overrides: dict[str, object] = {"work_dir": args.out}
    for field in ("repeats", "roundtrip_n", "throughput_n"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    cfg = Config.quick(**overrides) if args.quick else Config(**overrides)  # type: ignore[arg-type]
    return args, cfg


def byte_compile() -> None:
    """Write async_kernel's .pyc files, as ``pip install`` does for an installed package.

    An editable install has none, and under PYTHONDONTWRITEBYTECODE they are never written,
    so every start-up would compile the package from source: that is not what users run.
    """
    compileall.compile_dir(REPO_ROOT / "async_kernel", quiet=1)


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    byte_compile()
    every = KERNELS | OPTIONAL_KERNELS
    names = [k for k in every if k in args.kernels.split(",")]  # canonical order
    only = set(args.metrics.split(",")) if args.metrics else None
    samples: dict[str, list[dict[str, Value]]] = {k: [] for k in names}
    failed: dict[str, list[str]] = {k: [] for k in names}
    for repeat in range(cfg.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]  # rotate start
        for name in order:
            log(f"repeat {repeat + 1}/{cfg.repeats}: {name}")
            try:
                samples[name].append(run_once(every[name], cfg, repeat, only))
            except KernelFailed as exc:
                log(f"  {name} failed: {exc}")
                failed[name].append(str(exc))
    data = {
        "generated": report.now(),
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "machine": machine.machine(),
        "packages": machine.packages(),
        "kernels_run": names,
        "kernels": {
            k: {
                "failed": failed[k],
                "samples": samples[k],
                "summary": {
                    key: summarize([s[key] for s in samples[k] if key in s])
                    for key in keys_of(samples[k])
                },
            }
            for k in names
        },
    }
    summaries = {k: v["summary"] for k, v in data["kernels"].items()}
    data["targets"] = evaluate(names, summaries)
    report.write_json(cfg.work_dir / "latest.json", data)
    text = report.markdown(data)
    args.markdown.write_text(text)
    print(text)
    log(f"wrote {cfg.work_dir / 'latest.json'} and {args.markdown}")
    return 0


def keys_of(samples: list[dict[str, Value]]) -> list[str]:
    return list(dict.fromkeys(key for s in samples for key in s))


if __name__ == "__main__":
    sys.exit(main())
