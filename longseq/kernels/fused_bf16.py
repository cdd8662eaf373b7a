"""Fused bf16 (and fp32) attention tiles on CPUs with AVX512-BF16: a C kernel built on first use.

PyTorch's CPU flash-attention kernels spend most of a bf16 window pass outside the
matrix units: its bf16 backward measured slower than its fp32 one (docs/results.md),
so the blocked kernel used to differentiate upcast fp32 tiles. ``csrc/bf16_tiles.c``
does one tile's forward or backward with every product on ``vdpbf16ps`` (bf16 pairs,
fp32 accumulation) and the softmax in fp32 registers, for the same tile contract as
:mod:`longseq.kernels.tiles`: q ``(n, G, bq, D)``, k/v ``(n, G, span, D)`` (strided,
possibly overlapping views), an additive fp32 mask broadcastable to ``(n, G, bq, span)``.
Its fp32 twin, ``csrc/fp32_tiles.c`` (AVX512 FMAs, built into the same library, so it
needs the same CPU), takes fp32 tiles: it fuses what PyTorch's fp32 flash backward does
in separate passes (zeroed key-gradient tiles, P, dP and dS), and ``auto`` takes it where
it measures faster (:mod:`longseq.kernels.tile_choice`).

On Linux, the source is compiled with the system C compiler (``$CC``, else ``cc``, ``gcc``
or ``clang``) into ``$LONGSEQ_KERNEL_DIR`` (default ``~/.cache/longseq/kernels``; a
``longseq-kernels-<uid>`` folder in the system temp folder where that cannot be written),
once per source version, and loaded with :mod:`ctypes`; nothing is downloaded. Elsewhere, where the CPU lacks
AVX512-BF16, no compiler is found, the build fails, or ``LONGSEQ_FUSED_BF16=0`` is set,
:func:`available` is False and the blocked kernel keeps PyTorch's kernels. Work items
(tile x batch*head) are split over ``torch.get_num_threads()`` OpenMP threads; the
library links ``libgomp.so.1``, which resolves to the copy torch has already loaded, so
the threads are torch's own rather than a second pool competing for the cores.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from longseq.hardware import cpu_has_avx512_bf16

__all__ = ["available", "supports", "forward", "backward", "library_path", "DISABLE_ENV"]

log = logging.getLogger(__name__)

DISABLE_ENV = "LONGSEQ_FUSED_BF16"
KERNEL_DIR_ENV = "LONGSEQ_KERNEL_DIR"
SOURCE = Path(__file__).with_name("csrc") / "bf16_tiles.c"
#: Every source compiled into the library (the fp32 twin beside the bf16 kernel).
SOURCES = (SOURCE, SOURCE.with_name("fp32_tiles.c"))
#: The header both include (what they share); part of the library's version too.
HEADERS = (SOURCE.with_name("tiles_common.h"),)
#: The tile dtypes the kernel takes.
DTYPES = (torch.bfloat16, torch.float32)
CFLAGS = ("-O3", "-std=gnu11", "-fPIC", "-shared", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
          "-mavx512bf16", "-mfma")

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _compiler() -> list[str] | None:
    """``$CC`` split like a shell would (``CC="ccache gcc"``), else the first C compiler found."""
    cc = os.environ.get("CC")
    if cc:
        return shlex.split(cc)
    found = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return [found] if found else None


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def _cpu_has_avx512_bf16() -> bool:
    # Linux only: the build (gcc flags, libgomp shared with torch, pthread keys) is Linux's.
    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return cpu_has_avx512_bf16()


def library_path(cc: list[str] | None = None) -> Path:
    """Where the compiled library for this source, compiler and flags lives.

    One file per source version (~100 KB); builds of other versions stay until removed."""
    cc = cc or _compiler() or ["cc"]
    code = b"".join(path.read_bytes() for path in (*SOURCES, *HEADERS))
    key = hashlib.sha256(code + " ".join((*cc, *CFLAGS)).encode()).hexdigest()[:16]
    root = os.environ.get(KERNEL_DIR_ENV)
    folder = Path(root) if root else Path.home() / ".cache" / "longseq" / "kernels"
    return folder / f"bf16_tiles-{key}.so"


def _build(cc: list[str]) -> Path:
    path = library_path(cc)
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename: concurrent processes never load a partial file.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    except OSError as e:  # read-only home, a file in the way: build in the temp folder instead
        fallback = Path(tempfile.gettempdir()) / f"longseq-kernels-{os.getuid()}" / path.name
        log.warning("cannot write the kernel cache %s (%s); building in %s", path.parent, e, fallback.parent)
        path = fallback
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        proc = subprocess.run([*cc, *CFLAGS, "-o", tmp, *map(str, SOURCES), "-lm"], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cc)} failed: {proc.stderr.strip()[-600:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _load() -> ctypes.CDLL | None:
    global _lib, _tried
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if _disabled() or not _cpu_has_avx512_bf16():
            return None
        cc = _compiler()
        if not cc:
            log.info("no C compiler found: bf16 attention tiles use PyTorch's kernels")
            return None
        try:
            lib = ctypes.CDLL(str(_build(cc)))
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
            log.warning("could not build the fused bf16 attention kernel (%s); using PyTorch's kernels", e)
            return None
        runtimes = _openmp_runtimes()
        if len(runtimes) > 1:
            log.warning("two OpenMP runtimes are loaded (%s): the fused bf16 kernel's threads compete with "
                        "torch's; set %s=0 if bf16 attention is slower than expected", ", ".join(runtimes),
                        DISABLE_ENV)
        i64, ptr, i64p = ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
        head = [ctypes.c_int] + [i64] * 5  # threads, items, G, bq, span, D
        for name in ("bf16", "fp32"):
            fwd, bwd = getattr(lib, f"longseq_{name}_forward"), getattr(lib, f"longseq_{name}_backward")
            fwd.argtypes = head + [ptr, i64p] * 4 + [ctypes.c_float, ptr, ptr]
            bwd.argtypes = head + [ptr, i64p] * 5 + [ptr, ptr, i64p, ctypes.c_float] + [ptr] * 3
            fwd.restype = bwd.restype = ctypes.c_int
        _lib = lib
        return lib


def _openmp_runtimes() -> list[str]:
    """Distinct OpenMP runtime files mapped into this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if line.rstrip().endswith(".so") or ".so." in line}
    except OSError:
        return []
    names = ("libgomp", "libiomp5", "libomp.so")
    return sorted({p for p in paths if any(n in os.path.basename(p) for n in names)})


def available() -> bool:
    """True when the fused kernel is built (or buildable) and this CPU can run it."""
    return _load() is not None


def _word_aligned(t: Tensor) -> bool:
    """Rows start on 4-byte boundaries, so bf16 pairs can be read as 32-bit words."""
    return t.stride(-1) == 1 and all(s % 2 == 0 for s in t.stride()[:-1]) and t.data_ptr() % 4 == 0


def supports(q: Tensor, k: Tensor, v: Tensor, *rest: Tensor) -> bool:
    """Whether these tiles fit the kernel: CPU bf16 (word-aligned rows) or fp32, one dtype,
    16 | bq, 16 | D, the last axis contiguous."""
    tensors = (q, k, v, *rest)
    if q.dtype not in DTYPES or any(t.device.type != "cpu" or t.dtype != q.dtype or t.dim() != 4 for t in tensors):
        return False
    n, G, bq, D = q.shape
    if bq % 16 or D % 16 or k.shape != v.shape or k.shape[:2] != (n, G) or k.shape[-1] != D:
        return False
    if any(t.shape != q.shape for t in rest):  # out, dout: one row per query
        return False
    if q.dtype == torch.float32:
        return all(t.stride(-1) == 1 for t in tensors) and available()
    return all(_word_aligned(t) for t in tensors) and available()


def _strides(t: Tensor) -> ctypes.Array:
    return (ctypes.c_int64 * 3)(*t.stride()[:3])


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def _mask_t(mask: Tensor | None, shape: tuple[int, int, int, int]) -> tuple[Tensor | None, ctypes.Array | None]:
    """The additive mask transposed to (n|1, G|1, span, bq), queries contiguous.

    Leading axes may stay broadcast (stride 0); the two tile axes are materialised, since
    the kernel reads 16 queries of one key at a time."""
    if mask is None:
        return None, None
    if not mask.is_floating_point():
        raise ValueError(f"mask must be an additive float mask (-inf = may not attend), got {mask.dtype}")
    n, G, bq, span = shape
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    lead = mask.shape[:2]
    mt = mask.to(torch.float32).expand(*lead, bq, span).transpose(-1, -2).contiguous().expand(n, G, span, bq)
    return mt, _strides(mt)


def _call(fn, n_items: int, args: tuple) -> None:
    if fn(max(1, min(torch.get_num_threads(), n_items)), n_items, *args):
        raise MemoryError("the fused attention kernel could not allocate its scratch memory")


def forward(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
    """``(out, lse)`` of bf16 or fp32 tiles, as :func:`longseq.kernels.tiles.flash_forward`.

    ``out`` is ``(n, G, bq, D)`` in q's dtype; ``lse`` fp32 ``(n, G, bq)``, ``-inf`` (and
    ``out`` zero) for queries without an allowed key. Call :func:`supports` first."""
    lib = _load()
    n, G, bq, D = q.shape
    span = k.shape[2]
    out = torch.empty(n, G, bq, D, dtype=q.dtype)
    lse = torch.empty(n, G, bq, dtype=torch.float32)
    if out.numel():
        mt, ms = _mask_t(mask, (n, G, bq, span))
        _call(lib.longseq_fp32_forward if q.dtype == torch.float32 else lib.longseq_bf16_forward, n * G,
                  (G, bq, span, D, _ptr(q), _strides(q), _ptr(k), _strides(k), _ptr(v), _strides(v), _ptr(mt), ms,
                   float(scale), _ptr(out), _ptr(lse)))
    return out, lse


def backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mask: Tensor | None,
             scale: float) -> tuple[Tensor, Tensor, Tensor, None]:
    """fp32 ``(dq, dk, dv, None)`` of bf16 or fp32 tiles, as :func:`longseq.kernels.tiles.flash_backward`.

    ``out`` and ``lse`` may be those of a larger softmax this tile is part of."""
    lib = _load()
    n, G, bq, D = q.shape
    span = k.shape[2]
    dq = torch.empty(n, G, bq, D, dtype=torch.float32)
    dk = torch.empty(n, G, span, D, dtype=torch.float32)
    dv = torch.empty(n, G, span, D, dtype=torch.float32)
    if dq.numel():
        lse = lse.to(torch.float32).expand(n, G, bq).contiguous()
        mt, ms = _mask_t(mask, (n, G, bq, span))
        _call(lib.longseq_fp32_backward if q.dtype == torch.float32 else lib.longseq_bf16_backward, n * G,
                  (G, bq, span, D, _ptr(dout), _strides(dout), _ptr(q), _strides(q), _ptr(k), _strides(k),
                   _ptr(v), _strides(v), _ptr(out), _strides(out), _ptr(lse), _ptr(mt), ms, float(scale),
                   _ptr(dq), _ptr(dk), _ptr(dv)))
    return dq, dk, dv, None
