"""The ``ffnet`` command: ``ffnet <domain> <verb> ...``, plus ``info``, ``train``, ``test`` and ``tables``.

Each domain is named by its folder (``classification`` ... ``generation``) and adds its verbs in
``ffnet.<domain>.commands.register(subparsers)``; its ``bench`` verb comes from
``ffnet.<domain>.benchmark`` (``add_arguments(parser)``, ``run(args) -> BenchmarkResult``). A domain
is imported only when its group runs, so one domain's missing extra never breaks another's commands.

Errors a user can fix (a bad file, option or checkpoint, a missing extra) print one line,
``ffnet <domain> <verb>: error: ...``, and exit with status 2; ``--debug`` or ``FFNET_DEBUG=1`` shows
the traceback instead. ``--trust-checkpoint`` (anywhere on the line) lets checkpoint loads use the
full unpickler, for files you trust.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

DOMAINS = {
    "classification": "ImageNet classification: FFNet-1..4 in timm (bench, export)",
    "detection": "object detection: FFNet Cascade Mask R-CNN in mmdet (export)",
    "segmentation": "semantic segmentation: UperNet / FFNet-seg in mmseg (export)",
    "superres": "super-resolution: FFNet-SR(-light) (train, test, upscale, convert)",
    "pointcloud": "point-cloud segmentation on Pointcept-format data (train, test, predict)",
    "timeseries": "long-term forecasting: FFNet-TS (train, forecast, grid, convert)",
    "generation": "latent diffusion: U-DiT / U-FFNet (train, sample, fid, convert)",
}
# Groups a domain registers besides its own name.
EXTRA_GROUPS = {"pointcept": "pointcloud"}
EXTRA_GROUP_HELP = {"pointcept": "Pointcept's own train/test with the FFNet backbone (needs a Pointcept checkout)"}
# Deprecated spellings -> today's; two-word entries are matched first.
ALIASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("ts", "bench"): ("timeseries", "grid"),
    ("gen", "convert-udit"): ("generation", "convert"),
    ("det", "deploy"): ("detection", "export"),
    ("seg", "deploy"): ("segmentation", "export"),
    ("ts",): ("timeseries",),
    ("sr",): ("superres",),
    ("pc",): ("pointcloud",),
    ("gen",): ("generation",),
    ("det",): ("detection",),
    ("seg",): ("segmentation",),
    ("export",): ("classification", "export"),
    **{("bench", domain): (domain, "bench") for domain in DOMAINS},
}
# Which extra provides a missing third-party module, for commands outside a domain group.
EXTRA_OF_MODULE = {"mmdet": "detection", "mmseg": "segmentation", "mmpretrain": "detection", "mmcv": "detection",
                   "diffusers": "generation", "spconv": "spconv", "pandas": "timeseries"}
DEBUG_ENV = "FFNET_DEBUG"
TRUST_ENV = "FFNET_TRUST_CHECKPOINTS"  # read by ffnet.engine.checkpoints


def resolve_aliases(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` with a deprecated command spelling replaced, and the deprecation notice (or ``None``)."""
    words = argv[:2]
    for size in (2, 1):
        old = tuple(words[:size])
        if len(old) == size and old in ALIASES:
            new = ALIASES[old]
            notice = f"ffnet: 'ffnet {' '.join(old)}' is deprecated; use 'ffnet {' '.join(new)}'"
            return [*new, *argv[size:]], notice
    return argv, None


def _has_module(domain: str, name: str) -> bool:
    """Whether ``ffnet.<domain>.<name>`` exists, without importing the domain package (and its libraries)."""
    spec = find_spec(f"ffnet.{domain}")
    locations = spec.submodule_search_locations if spec is not None else None
    return bool(locations) and any((Path(folder) / f"{name}.py").is_file() for folder in locations)


def benchmark_domains() -> list[str]:
    return [d for d in DOMAINS if _has_module(d, "benchmark")]


def _verbs_of(group: argparse.ArgumentParser):
    """The sub-command action of a domain group's parser (added by the domain's ``register``)."""
    for action in group._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return group.add_subparsers(dest="verb", required=True)


def _run_benchmark(module, args) -> None:
    from ffnet.engine.bench import write_result

    write_result(module.run(args), args.out_dir)


def _add_bench(verbs, domain: str, load: bool) -> None:
    """The ``bench`` verb of ``domain``; its arguments are read only when it runs (``load``)."""
    if not _has_module(domain, "benchmark"):
        return
    if not load:
        verbs.add_parser("bench", help="speed benchmark (writes docs/results/)")
        return
    module = importlib.import_module(f"ffnet.{domain}.benchmark")
    parser = verbs.add_parser("bench", help=(module.__doc__ or "speed benchmark").strip().splitlines()[0])
    module.add_arguments(parser)
    parser.set_defaults(func=lambda args: _run_benchmark(module, args))


def _add_domain(sub, domain: str, words: list[str]) -> None:
    """Register ``domain``'s own commands (importing ``ffnet.<domain>.commands``) and its ``bench``."""
    if _has_module(domain, "commands"):
        importlib.import_module(f"ffnet.{domain}.commands").register(sub)
    if domain not in sub.choices:
        sub.add_parser(domain, help=DOMAINS[domain])
    _add_bench(_verbs_of(sub.choices[domain]), domain, load=words[1:2] == ["bench"])


def _add_generic(sub) -> None:
    info = sub.add_parser("info", help="versions of the stack and which optional backends are usable")
    info.set_defaults(func=lambda args: importlib.import_module("ffnet.info").main(args))
    for verb, help_text in (("train", "train from any mmengine config (mmpretrain/mmdet/mmseg style) with the Runner"),
                            ("test", "evaluate a checkpoint with a config's test loop (strict: the whole model loads)")):
        parser = sub.add_parser(verb, help=help_text)
        parser.set_defaults(func=lambda args, v=verb: getattr(importlib.import_module("ffnet.engine.runner"), v)(args))
    tables = sub.add_parser("tables", help="regenerate every benchmark table on this machine (the main job)")
    tables.set_defaults(func=lambda args: importlib.import_module("ffnet.tables").main(args))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``argv``: every group is listed, but only the invoked one is imported and filled in."""
    words = [a for a in argv if not a.startswith("-")][:2]
    command = words[0] if words else None
    parser = argparse.ArgumentParser(prog="ffnet", description="FFNet and MetaMixer in every domain of the paper: "
                                                              "ffnet <domain> <verb> ..., plus info, train, test, tables.",
                                     epilog="Options accepted anywhere: --debug (show tracebacks), "
                                            "--trust-checkpoint (full unpickler for checkpoints you trust).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(
        [*DOMAINS, *EXTRA_GROUPS, "info", "train", "test", "tables"]) + "}")
    invoked = EXTRA_GROUPS.get(command, command)
    for domain, help_text in DOMAINS.items():
        if domain == invoked:
            _add_domain(sub, domain, words)
        else:
            sub.add_parser(domain, help=help_text)
    for group, domain in EXTRA_GROUPS.items():
        if group not in sub.choices:
            sub.add_parser(group, help=EXTRA_GROUP_HELP[group])
    _add_generic(sub)
    if command in ("train", "test", "tables"):
        _fill_generic(sub.choices[command], command)
    return parser


def _fill_generic(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "tables":
        importlib.import_module("ffnet.tables").add_arguments(parser, benchmark_domains())
        return
    runner = importlib.import_module("ffnet.engine.runner")
    (runner.add_train_arguments if command == "train" else runner.add_test_arguments)(parser)


def _user_message(err: BaseException) -> str:
    """One line: KeyError's message without its quotes, whitespace (newlines) collapsed."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


def _missing_extra(err: ModuleNotFoundError, domain: str | None) -> str | None:
    """The one-line message for a missing third-party module, or ``None`` when it is not one (a bug)."""
    name = (err.name or "").split(".")[0]
    if not name or name == "ffnet":
        return None
    extra = domain if domain in DOMAINS else EXTRA_OF_MODULE.get(name, "all")
    return f"this command needs the {name!r} package, which is not installed: pip install \"ffnet[{extra}]\""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if "--trust-checkpoint" in argv:
        os.environ[TRUST_ENV] = "1"
    argv = [a for a in argv if a not in ("--debug", "--trust-checkpoint")]
    argv, notice = resolve_aliases(argv)
    if notice:
        print(notice, file=sys.stderr)
    words = [a for a in argv if not a.startswith("-")][:2]
    domain = EXTRA_GROUPS.get(words[0], words[0]) if words else None
    prog = "ffnet " + " ".join(words[:1] if domain not in DOMAINS else words)
    from ffnet.engine.errors import UserError

    try:
        args = build_parser(argv).parse_args(argv)
        return int(args.func(args) or 0)
    except ModuleNotFoundError as err:
        message = _missing_extra(err, domain)
        if debug or message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
    except (UserError, OSError, ValueError, KeyError, pickle.UnpicklingError) as err:
        if debug:
            raise
        print(f"{prog}: error: {_user_message(err)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
