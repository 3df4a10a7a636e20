"""Benchmark tables: one result per domain, written as Markdown + CSV (+ PNG) under docs/results/.

``ffnet tables`` runs every domain's benchmark with its defaults (no user data needed);
``ffnet bench DOMAIN`` runs one with its own options.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

DEFAULT_OUT_DIR = Path("docs/results")


@dataclass
class BenchmarkResult:
    """What a domain benchmark returns.

    ``rows`` are dicts with the same keys (the table's columns, in order); ``notes`` are
    sentences printed under the table (protocol, counter used, ratios to the paper);
    ``plot`` writes a PNG to the path it is given.
    """

    name: str
    title: str
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    plot: Callable[[Path], None] | None = None


def to_markdown(rows: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g")


def machine_line() -> str:
    import torch

    return (f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}.")


def write_result(result: BenchmarkResult, out_dir: Path | str = DEFAULT_OUT_DIR) -> Path:
    """Print the table and write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` (if plotted)."""
    if not result.rows:
        raise ValueError(f"benchmark {result.name!r} produced no rows")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = to_markdown(result.rows)
    lines = [f"# {result.title}", "", table, "", machine_line(), ""]
    lines += [f"- {note}" for note in result.notes]
    if result.plot is not None:
        png = out_dir / f"{result.name}.png"
        result.plot(png)
        lines += ["", f"![{result.title}]({png.name})"]
    md = out_dir / f"{result.name}.md"
    md.write_text("\n".join(lines) + "\n")
    with open(out_dir / f"{result.name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result.rows[0]))
        writer.writeheader()
        writer.writerows(result.rows)
    print("\n".join(lines))
    return md


def add_arguments(parser: argparse.ArgumentParser, domains: list[str]) -> None:
    parser.add_argument("--domains", nargs="+", choices=domains, default=domains,
                        help="which domains' tables to regenerate (default: all)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)


def main(args: argparse.Namespace) -> None:
    for domain in args.domains:
        module = importlib.import_module(f"ffnet.{domain}.benchmark")
        domain_parser = argparse.ArgumentParser()
        module.add_arguments(domain_parser)
        domain_args = domain_parser.parse_args([])
        domain_args.out_dir = args.out_dir
        print(f"== {domain} ==", flush=True)
        write_result(module.run(domain_args), args.out_dir)
