"""``ffnet tables``: every domain's benchmark with its defaults (no user data needed), written under docs/results/.

The tables themselves (:class:`~ffnet.engine.bench.BenchmarkResult`, :func:`~ffnet.engine.bench.write_result`)
are the benchmark kit's; ``ffnet <domain> bench`` runs one domain's benchmark with its own options.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from ffnet.engine.bench import DEFAULT_OUT_DIR, write_result


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
