"""The ``ffnet`` command.

Generic subcommands live here (``info``, ``train``, ``test``, ``bench``, ``tables``, ``export``).
Each domain may add its own group (``ffnet ts ...``, ``ffnet sr ...``) by defining
``ffnet.<domain>.commands.register(subparsers)``, and its benchmark by defining
``ffnet.<domain>.benchmark.run(args) -> BenchmarkResult`` plus ``add_arguments(parser)``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

DOMAINS = ("classification", "detection", "segmentation", "superres", "pointcloud", "timeseries", "generation")


def _domain_module(domain: str, name: str):
    """``ffnet.<domain>.<name>`` or ``None`` when the domain does not define it."""
    qualified = f"ffnet.{domain}.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as err:
        if err.name == qualified:
            return None
        raise


def benchmark_domains() -> list[str]:
    from importlib.util import find_spec

    return [d for d in DOMAINS if find_spec(f"ffnet.{d}.benchmark") is not None]


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="versions of the stack and which optional backends are usable")
    p.set_defaults(func=lambda args: __import__("ffnet.info", fromlist=["main"]).main(args))


def _add_engine(sub) -> None:
    from ffnet import engine

    train = sub.add_parser("train", help="train from an mmengine/mmdet/mmseg config with the mmengine Runner")
    engine.add_train_arguments(train)
    train.set_defaults(func=engine.train)
    test = sub.add_parser("test", help="evaluate a checkpoint with the config's test loop")
    engine.add_test_arguments(test)
    test.set_defaults(func=engine.test)


def _add_bench(sub, only: str | None = None) -> None:
    """The ``bench`` group; ``only`` imports just that domain's benchmark (its module loads the domain)."""
    bench = sub.add_parser("bench", help="speed/size benchmark of one domain (writes docs/results/)")
    domains = bench.add_subparsers(dest="domain", required=True)
    for domain in [only] if only in DOMAINS else benchmark_domains():
        module = _domain_module(domain, "benchmark")
        parser = domains.add_parser(domain, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(parser)
        parser.set_defaults(func=lambda args, m=module: _run_benchmark(m, args))


def _run_benchmark(module, args) -> None:
    from ffnet.tables import write_result

    write_result(module.run(args), args.out_dir)


def _add_tables(sub) -> None:
    from ffnet import tables

    p = sub.add_parser("tables", help="regenerate every benchmark table on this machine (the main job)")
    tables.add_arguments(p, benchmark_domains())
    p.set_defaults(func=tables.main)


def _add_export(sub) -> None:
    from ffnet import export

    p = sub.add_parser("export", help="export a deployed (re-parameterized) model to ONNX")
    export.add_arguments(p)
    p.set_defaults(func=export.main)


_GENERIC_COMMANDS = ("info", "train", "test", "export")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser, or, when ``argv`` names a generic command (or ``bench <domain>``), only what it needs.

    Registering every domain's commands and benchmarks imports every domain (mmdet, mmseg, diffusers …),
    which takes seconds; ``ffnet train CONFIG`` needs none of it.
    """
    words = [a for a in (argv or ()) if not a.startswith("-")]
    command = words[0] if words else None
    parser = argparse.ArgumentParser(prog="ffnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_info(sub)
    _add_engine(sub)
    _add_export(sub)
    if command in _GENERIC_COMMANDS:
        return parser
    if command == "bench":
        _add_bench(sub, only=words[1] if len(words) > 1 else None)
        return parser
    _add_bench(sub)
    _add_tables(sub)
    for domain in DOMAINS:
        module = _domain_module(domain, "commands")
        if module is not None:
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
