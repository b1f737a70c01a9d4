"""The ``anybit`` command: ``anybit types``, ``anybit layout EXPR``, ``anybit info``, ``anybit demo``,
``anybit bench``.

Each command imports what it needs when it runs, so ``anybit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _types(args: argparse.Namespace) -> int:
    from anybit.dtypes.table import types_table

    print(types_table())
    return 0


def _layout(args: argparse.Namespace) -> int:
    from anybit.layout import show_layout

    print(show_layout(args.expression, args.draw))
    return 0


def _info(args: argparse.Namespace) -> int:
    from anybit.info import environment_report

    print(environment_report())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from anybit.nn.demo import run_demo

    return run_demo(device=args.device)


def _bench(args: argparse.Namespace) -> int:
    # The benchmarks live next to the package in the repository, not in the installed package. Every option
    # after `bench` is the benchmark's own (its parser is the one list of them: `anybit bench --help`).
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "matmul.py").exists():
        raise ValueError(f"benchmarks/matmul.py not found under {root}: run it from a repository checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.matmul import main as bench_main

    return bench_main(args.options, prog="anybit bench")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="anybit",
        description="anybit: a virtual machine for GPU kernels over low-precision data of any bit width.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    types = commands.add_parser(
        "types", help="list every data type: bits, range, smallest subnormal, inf/NaN, example encodings"
    )
    types.set_defaults(run=_types)
    layout = commands.add_parser(
        "layout",
        help='print a register layout\'s thread/register grid, e.g. "local(2,1).spatial(8,4).local(1,2)"',
    )
    layout.add_argument("expression", help="a layout expression")
    layout.add_argument("--draw", metavar="PNG", help="also draw the layout to this PNG file")
    layout.set_defaults(run=_layout)
    info = commands.add_parser("info", help="versions, CUDA compiler and GPU availability")
    info.set_defaults(run=_info)
    demo = commands.add_parser(
        "demo",
        help="with a GPU: fp16 vs int4/int3 decode of a Llama-shaped model; without: quantized matmuls on "
        "the CPU interpreter and the CUDA they compile to",
    )
    demo.add_argument(
        "--device", choices=("cpu", "cuda"), help="force the CPU or GPU demo (default: GPU if any)"
    )
    demo.set_defaults(run=_demo)
    commands.add_parser(
        "bench",
        add_help=False,  # `anybit bench --help` is the benchmark's own help
        help="benchmark quantized matmul (decode, prefill, crossover) against ceilings and cuBLAS; its "
        "options: anybit bench --help",
    ).set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anybit`` console script and ``python -m anybit``."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.options = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except ValueError as error:
        print(f"anybit {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
