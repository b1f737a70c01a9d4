"""Instructions per weight in the decode kernel's main loop, read from SASS on this machine (no GPU).

Compiles the decode kernel of each type (the default packing of an 8192×8192 weight, group 128, zero points
for unsigned types; warps, stages, split and activation dtype as given, float16 by default) for sm_90a with
NVRTC, disassembles the cubin with ``nvdisasm`` and counts the instructions of the longest backward-branch
loop — the K loop — with the most frequent opcodes. This is how docs/notes/decode-kernel.md's SASS tables
are made: an issue-bound kernel's speed follows these counts, and they cost no device time.

Usage (repository root; needs the ``sass`` extra, ``pip install -e ".[sass]"``, or nvdisasm on PATH)::

    python benchmarks/sass_counts.py [--types uint4,int4] [--warps 4] [--stages 4] [--split 1] [--no-pdl]
        [--act bfloat16] [--operand b] [--accumulate] [--rms [--rms-rows 1]] [--bias-after-dot]
        [--rows 16] [--bytes-per-thread 128] [--weights-in-registers]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import anybit  # noqa: E402
from anybit.kernels import choose_layout  # noqa: E402
from anybit.kernels.decode import DecodeMatmul  # noqa: E402
from anybit.kernels.decode_transposed import DecodeMatmulTransposed  # noqa: E402

DEFAULT_TYPES = (
    "uint1,uint2,int2,uint3,int3,uint4,int4,float4_e2m1,uint5,int5,uint6,int6,float6_e3m2,float6_e2m3,"
    "uint8,int8,float8_e4m3,float8_e5m2"
)
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^\s*\.L_x_(\d+):")


def nvdisasm() -> str:
    """The nvdisasm executable: on PATH, or from the nvidia-cuda-nvdisasm wheel."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:
        import nvidia.cu13  # the wheel's namespace package

        candidate = pathlib.Path(next(iter(nvidia.cu13.__path__))) / "bin" / "nvdisasm"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise SystemExit("nvdisasm not found: pip install -e '.[sass]' (nvidia-cuda-nvdisasm) or put it on PATH")


def chunks_per_pass(config: dict) -> int:
    """K chunks one pass of a decode configuration's main loop handles: 2 with the weights in registers
    loaded a chunk ahead (two buffers, the loop unrolled twice), else 1 (the later loads keep one buffer)."""
    return 2 if config.get("weights_in_registers") and not config.get("late_weight_loads") else 1


def main_loop(text: str) -> list[str]:
    """The instructions of the longest loop (a branch back to an earlier label) in nvdisasm's output."""
    labels: dict[int, int] = {}
    pending: int | None = None
    instructions: list[tuple[int, str]] = []
    for line in text.splitlines():
        label = _LABEL.match(line)
        if label:
            pending = int(label.group(1))
            continue
        found = _INSTRUCTION.search(line)
        if found:
            address = int(found.group(1), 16)
            instructions.append((address, found.group(2)))
            if pending is not None:
                labels[pending], pending = address, None
    loops = []
    for address, text_ in instructions:
        target = re.search(r"BRA.*\.L_x_(\d+)", text_)
        if target and labels.get(int(target.group(1)), address + 1) < address:
            loops.append((labels[int(target.group(1))], address))
    if not loops:
        return []
    start, end = max(loops, key=lambda loop: loop[1] - loop[0])
    return [text_ for address, text_ in instructions if start <= address <= end]


def opcode(instruction: str) -> str:
    """The opcode without predicate and modifiers: ``@!P0 LOP3.LUT R1, ...`` → ``LOP3``."""
    return re.sub(r"^@!?U?P\w+\s+", "", instruction).split()[0].split(".")[0]


def count(
    type_name: str,
    warps: int,
    stages: int,
    split: int,
    tool: str,
    dependent_launch: bool = True,
    act: torch.dtype = torch.float16,
    operand: str = "a",
    rows: int = 8,
    bytes_per_thread: int = 64,
    **fused,
) -> dict:
    layout = choose_layout(
        type_name, 8192, 8192, 128, operand=operand, max_bytes_per_thread=bytes_per_thread, act_dtype=act
    )
    options = dict(
        has_zeros=type_name.startswith("uint"),
        warps=warps,
        stages=stages,
        split=split,
        dependent_launch=dependent_launch,
        **fused,  # accumulate, rms_eps: the fused decoder-layer forms
    )
    if operand == "a":  # the transposed kernel: 8 rows of x per block (M ≤ 8) or 16
        kernel = DecodeMatmulTransposed(layout, act, rows=rows, **options)
    else:
        kernel = DecodeMatmul(layout, act, **options)
    compiled = anybit.compile(kernel, *(None,) * 6, 1, 8192, 8192, arch="sm_90a")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.cubin)
        cubin.flush()
        text = subprocess.run([tool, "-c", cubin.name], capture_output=True, text=True, check=True).stdout
    loop = main_loop(text)
    weights = layout.k_chunk * layout.n_per_warp // 32 * chunks_per_pass(fused)
    return {
        "type": type_name,
        "weights_per_thread": weights,
        "loop": len(loop),
        "per_weight": len(loop) / weights,
        "top": collections.Counter(opcode(i) for i in loop).most_common(6),
        "registers": compiled.resources.registers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", default=DEFAULT_TYPES)
    parser.add_argument("--warps", type=int, default=4)
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--no-pdl", action="store_true", help="the kernel without dependent launch")
    parser.add_argument("--act", choices=("float16", "bfloat16"), default="float16", help="activation dtype")
    parser.add_argument(
        "--operand",
        choices=("b", "a"),
        default="a",
        help="a (default): the weight as the A operand (transposed kernel); b: as the B operand",
    )
    parser.add_argument("--rows", type=int, choices=(8, 16), default=8, help="rows of x a transposed block")
    parser.add_argument(
        "--bytes-per-thread",
        type=int,
        default=64,
        help="warp-tile width (choose_layout's max_bytes_per_thread)",
    )
    parser.add_argument("--accumulate", action="store_true", help="the kernel that adds into y (a residual)")
    parser.add_argument("--rms", action="store_true", help="the kernel that normalises x's rows by their RMS")
    parser.add_argument("--rms-rows", type=int, default=1, help="with --rms: rows of x present (M ≤ 8)")
    parser.add_argument(
        "--warps-along-k",
        action="store_true",
        help="the transposed kernel with its warps splitting K (types without zero points)",
    )
    parser.add_argument(
        "--bias-after-dot",
        action="store_true",
        help="the magic number left in the weights and taken off by a second dot (integer types; their "
        "zero points after the dot too)",
    )
    parser.add_argument(
        "--weights-in-registers",
        action="store_true",
        help="the weight bytes loaded straight into registers a chunk ahead (no shared-memory ring for them)",
    )
    options = parser.parse_args(argv)
    along_k = {"warps_along_k": True} if options.warps_along_k else {}
    if options.weights_in_registers:
        along_k["weights_in_registers"] = True
    if options.bias_after_dot:
        along_k["bias_after_dot"] = True
    tool = nvdisasm()
    print("| type | weights/thread | loop instructions | per weight | registers | most frequent |")
    print("|---|---|---|---|---|---|")
    for type_name in (t for t in options.types.split(",") if t):
        row = count(
            type_name,
            options.warps,
            options.stages,
            options.split,
            tool,
            not options.no_pdl,
            getattr(torch, options.act),
            options.operand,
            options.rows,
            options.bytes_per_thread,
            accumulate=options.accumulate,
            rms_eps=1e-5 if options.rms else None,
            rms_rows=options.rms_rows if options.rms else None,
            rms_k=8192 if options.rms else None,
            **along_k,
        )
        top = ", ".join(f"{name} {n}" for name, n in row["top"])
        print(
            f"| {row['type']} | {row['weights_per_thread']} | {row['loop']} | {row['per_weight']:.2f} | "
            f"{row['registers']} | {top} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
