"""What the Triton kernels compile to on a GPU, read without one.

Triton compiles ahead of time for any target: its wheel ships ptxas and nvdisasm. This module
builds the arguments `triton_window.forward`/`backward` would launch with at a given shape and
layout (on the meta device: no memory, no GPU), specialises them as Triton's JIT does at launch
(an integer equal to 1 becomes a constant, one divisible by 16 is marked so, pointers are
16-byte aligned), compiles every kernel for every tile configuration for sm_90 (H100/H200), and
counts what the machine code holds: registers, local-memory spills, shared memory, global loads
by width, warp shuffles, and special-function (exp) instructions.

Triton's interpreter (which `sasa_bench.kernels` turns on where there is no CUDA) replaces the
kernels by Python functions, so the compilation runs in a subprocess with the interpreter off:
`inspect_in_subprocess`, or `python -m sasa_bench.kernels.sass`.

These are static counts of the machine code (the unrolled row of k offsets appears once), not
times. They catch what makes a memory-bound kernel slow before a GPU is at hand: scalar 2-byte
loads where 16-byte ones were meant, shuffles from reductions split across threads, spills.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sasa_bench.errors import SasaBenchError

#: instruction families counted, by SASS opcode prefix
FAMILIES = ("LDG", "STG", "LDS", "STS", "LDL", "STL", "SHFL", "MUFU")
_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@dataclass
class KernelCode:
    kernel: str
    tile: tuple[int, int, int]  # (TILE_H, TILE_W, num_warps)
    head_dim: int
    layout: str
    dtype: str
    registers: int
    stack_bytes: int
    shared_bytes: int
    local_bytes: int
    instructions: dict[str, int] = field(default_factory=dict)  # opcode with modifiers -> count
    loop_instructions: int = 0  # in the window-row loop's body (one row of k offsets)
    offsets_per_iteration: int = 1  # offsets of the window that body covers

    @property
    def warp_instructions_per_pixel_offset(self) -> float | None:
        """The loop's warp instructions per pixel and window offset: the instruction-issue cost
        of the kernel's main work (each SM sub-partition issues one warp instruction a clock).
        None where no loop was found."""
        if not self.loop_instructions:
            return None
        tile_h, tile_w, warps = self.tile
        return self.loop_instructions * warps / (tile_h * tile_w * self.offsets_per_iteration)

    def family(self, name: str) -> int:
        return sum(n for op, n in self.instructions.items() if op.split(".")[0] == name)

    @property
    def scalar_global_loads(self) -> int:
        """Global loads narrower than 4 bytes (the sign of a layout Triton could not vectorise)."""
        return sum(
            n
            for op, n in self.instructions.items()
            if op.startswith("LDG") and re.search(r"\.(U8|S8|U16|S16)\b", op)
        )

    @property
    def widest_load_bits(self) -> int:
        widths = [
            int(m.group(1))
            for op in self.instructions
            if (m := re.search(r"LDG\S*\.(64|128)\b", op))
        ]
        return max(widths, default=32)

    def to_dict(self) -> dict[str, object]:
        return {
            "kernel": self.kernel,
            "tile": "x".join(map(str, self.tile[:2])) + f"/{self.tile[2]}w",
            "head_dim": self.head_dim,
            "layout": self.layout,
            "dtype": self.dtype,
            "registers": self.registers,
            "spill_bytes": self.local_bytes + self.stack_bytes,
            "shared_bytes": self.shared_bytes,
            **{family: self.family(family) for family in FAMILIES},
            "scalar_loads": self.scalar_global_loads,
            "widest_load_bits": self.widest_load_bits,
            "loop_instructions": self.loop_instructions,
            "warp_instructions_per_pixel_offset": self.warp_instructions_per_pixel_offset,
        }


def _tool(name: str) -> str:
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise SasaBenchError(f"this Triton has no {name} ({path}): cannot compile for a GPU here")
    return str(path)


def capture_launches(q, k, v, rel, grad, kernel_size: int, heads: int) -> list[tuple]:
    """(kernel, args, meta) of every launch of one forward and backward, without running any."""
    from sasa_bench.kernels import triton_window

    launches = []
    original = triton_window._launch

    def record(kernel, rows, height, width, args, meta, tile=None):
        launches.append((kernel, args, meta))

    triton_window._launch = record
    try:
        out, lse = triton_window.forward(q, k, v, rel, kernel_size, heads)
        triton_window.backward(q, k, v, rel, out, lse, grad, kernel_size, heads)
    finally:
        triton_window._launch = original
    return launches


def _specialise(kernel, args, meta, tile):
    """Triton's signature, constants and attributes for these arguments, as its JIT makes them."""
    from triton.compiler import ASTSource

    names = kernel.arg_names
    constants = {**meta, "TILE_H": tile[0], "TILE_W": tile[1]}
    signature, attrs = {}, {}
    for index, name in enumerate(names):
        if name in constants:
            signature[name] = "constexpr"
            continue
        value = args[index]
        if index in kernel.constexprs:
            signature[name] = "constexpr"
            constants[name] = value
        elif isinstance(value, torch.Tensor):
            signature[name] = "*" + _TYPES[value.dtype]
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif value == 1:
            signature[name] = "constexpr"
            constants[name] = 1
        else:
            signature[name] = "i32"
            if value % 16 == 0:
                attrs[(index,)] = [["tt.divisibility", 16]]
    constexprs = {(names.index(n),): v for n, v in constants.items()}
    return ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)


def _read_machine_code(cubin: bytes) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        Path(path).write_bytes(cubin)
        sass = subprocess.run(
            [_tool("nvdisasm"), "-c", path], capture_output=True, text=True, check=True
        ).stdout
        usage = subprocess.run(
            [_tool("cuobjdump"), "-res-usage", path], capture_output=True, text=True, check=True
        ).stdout
    return sass, usage


def loop_body_size(sass: str) -> int:
    """Instructions of the largest loop body in disassembled SASS: from a label to the last
    branch back to it (0 if there is no backward branch)."""
    lines = sass.splitlines()
    labels = {}
    largest = 0
    count = 0  # instructions so far
    for line in lines:
        label = re.match(r"^(\.L_x_\d+):", line)
        if label:
            labels[label.group(1)] = count
            continue
        if not re.search(r"/\*[0-9a-f]{4,}\*/", line):
            continue
        count += 1
        branch = re.search(r"\bBRA\b.*`\((\.L_x_\d+)\)", line)
        if branch and branch.group(1) in labels:  # a backward branch: a loop
            largest = max(largest, count - labels[branch.group(1)])
    return largest


def compile_kernel(kernel, args, meta, tile, arch: int = 90) -> KernelCode:
    import triton
    from triton.backends.compiler import GPUTarget

    source = _specialise(kernel, args, meta, tile)
    compiled = triton.compile(
        source, target=GPUTarget("cuda", arch, 32), options={"num_warps": tile[2]}
    )
    sass, usage = _read_machine_code(compiled.asm["cubin"])
    resources = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
    if resources is None:
        raise SasaBenchError(f"cuobjdump gave no resource usage: {usage[:200]}")
    opcodes = re.findall(rf"\b((?:{'|'.join(FAMILIES)})(?:\.[\w]+)*)", sass)
    registers, stack, shared, local = map(int, resources.groups())
    return KernelCode(
        kernel=kernel.fn.__name__ if hasattr(kernel, "fn") else kernel.__name__,
        tile=tile,
        head_dim=args[kernel.arg_names.index("D")],
        layout="",
        dtype="",
        registers=registers,
        stack_bytes=stack,
        shared_bytes=shared,
        local_bytes=local,
        instructions=dict(collections.Counter(opcodes)),
        loop_instructions=loop_body_size(sass),
        offsets_per_iteration=meta["KS"],  # window rows loop, columns unrolled
    )


def inspect_kernels(
    *,
    head_dims=(8, 16, 32, 64),
    heads: int = 8,
    kernel_size: int = 7,
    dtype: torch.dtype = torch.bfloat16,
    channels_last: bool = True,
    arch: int = 90,
) -> list[KernelCode]:
    """Compile the forward and both backward kernels for sm_`arch` at each head dim, for each
    tile the autotuner would time, with the q/k/v layout the models give (channel slices of one
    fused projection)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SasaBenchError("Triton's interpreter is on: use inspect_in_subprocess")
    from sasa_bench.kernels import triton_window

    rows = []
    for d in head_dims:
        channels = d * heads
        qkv = torch.empty(2, 3 * channels, 14, 14, device="meta", dtype=dtype)
        if channels_last:
            qkv = qkv.to(memory_format=torch.channels_last)
        q, k, v = qkv.split(channels, dim=1)
        rel = torch.empty(heads, d, kernel_size**2, device="meta", dtype=dtype)
        grad = torch.empty_like(q)
        for kernel, args, meta in capture_launches(q, k, v, rel, grad, kernel_size, heads):
            for tile in triton_window.candidates(kernel, d):
                code = compile_kernel(kernel, args, meta, tile, arch)
                code.layout = "channels_last" if channels_last else "nchw"
                code.dtype = _TYPES[dtype]
                rows.append(code)
    return rows


def inspect_in_subprocess(
    head_dims=(8, 16, 32, 64), channels_last: bool = True, dtype: str = "bf16", timeout: float = 900
) -> list[dict[str, object]]:
    """`inspect_kernels` in a fresh interpreter with Triton's interpreter off; rows as dicts."""
    command = [sys.executable, "-m", "sasa_bench.kernels.sass", "--dtype", dtype]
    command += ["--head-dims", ",".join(map(str, head_dims))]
    command += [] if channels_last else ["--nchw"]
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise SasaBenchError(f"compiling the kernels took over {timeout:.0f} s") from None
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SasaBenchError(f"compiling the kernels failed: {tail}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Compile the Triton kernels for sm_90, as JSON")
    parser.add_argument("--head-dims", default="8,16,32,64")
    parser.add_argument("--dtype", choices=sorted(set(_TYPES.values())), default="bf16")
    parser.add_argument("--nchw", action="store_true", help="q/k/v in NCHW (default NHWC)")
    args = parser.parse_args(argv)
    dtype = {name: t for t, name in _TYPES.items()}[args.dtype]
    rows = inspect_kernels(
        head_dims=tuple(int(d) for d in args.head_dims.split(",")),
        dtype=dtype,
        channels_last=not args.nchw,
    )
    print(json.dumps([row.to_dict() for row in rows]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TRITON_INTERPRET", "0")
    raise SystemExit(main())
