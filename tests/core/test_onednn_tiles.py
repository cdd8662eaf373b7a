"""The ``math`` tile path in bf16 runs its products through oneDNN (PyTorch's bf16 CPU
matmul): brgemm on AVX512-BF16, AMX tiles where the CPU has them. Checked from oneDNN's
own log of what it executed; on an AMX CPU the same run is also checked against the
float64 reference, so the AMX instructions are tested wherever they can be picked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Runs bf16 window attention forward and backward on the math tiles, counting the bf16
#: matrix products PyTorch dispatches, and compares with float64 (relative error norms).
SCRIPT = textwrap.dedent("""
    import json, torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from longseq import attend
    from longseq.kernels import use_backend
    from longseq.patterns import SlidingWindow

    PRODUCTS = (torch.ops.aten.bmm.default, torch.ops.aten.mm.default)

    class Products(TorchDispatchMode):
        count = 0
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in PRODUCTS and args[0].dtype == torch.bfloat16:
                Products.count += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    L, pattern = 1000, SlidingWindow(100, causal=True)
    q, k, v = (torch.randn(1, 2, L, 64).to(torch.bfloat16).requires_grad_() for _ in range(3))
    g = torch.randn(1, 2, L, 64).to(torch.bfloat16)
    with use_backend("math"), Products():
        out = attend(q, k, v, pattern)
        grads = torch.autograd.grad(out, (q, k, v), g)
    qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
    mask = pattern.dense_mask(L)
    ref = torch.nn.functional.scaled_dot_product_attention(qd, kd, vd, attn_mask=mask)
    refs = (ref, *torch.autograd.grad(ref, (qd, kd, vd), g.double()))
    errors = [float((a.double() - b).norm() / b.norm()) for a, b in zip((out, *grads), refs)]
    print("RESULT " + json.dumps({"products": Products.count, "errors": errors}), flush=True)
""")


def _run(code: str) -> tuple[dict | None, list[str]]:
    """The script's RESULT and oneDNN's implementation name for each bf16 matmul it executed."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = None
    impls = []
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and "matmul" in fields and "src:bf16" in line:
            impls.append(fields[fields.index("matmul") + 1])
    return result, impls


def _onednn_serves_bf16() -> bool:
    _, impls = _run("import torch; a = torch.randn(4, 64, 64).bfloat16(); torch.bmm(a, a)")
    return bool(impls)


def _has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_math_tiles_in_bf16_are_onednn_products():
    if not _onednn_serves_bf16():
        pytest.skip("PyTorch's bf16 matmul does not run on oneDNN on this CPU (no AVX512 bf16 support)")
    result, impls = _run(SCRIPT)
    assert result["products"] >= 6  # forward QK^T, PV; backward P^T dO, dS K, dS^T Q per chunk
    # every bf16 tile product was executed by oneDNN (dO V^T is taken in float32)
    assert len(impls) >= result["products"], (result, impls[:5])
    assert all(impl.startswith("brg") for impl in impls), sorted(set(impls))
    assert max(result["errors"]) < 3e-2, result


@pytest.mark.skipif(not _has_amx(), reason="no amx_tile in /proc/cpuinfo: the AMX tile products cannot run here")
def test_math_tiles_run_on_amx_and_match_float64():
    result, impls = _run(SCRIPT)
    assert impls and all("amx" in impl for impl in impls), sorted(set(impls))
    assert len(impls) >= result["products"]
    assert max(result["errors"]) < 3e-2, result
