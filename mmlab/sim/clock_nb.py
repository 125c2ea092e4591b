"""A cycle counter readable from nopython code, and its calibration to nanoseconds.

``cycles_nb()`` compiles to LLVM's ``readcyclecounter`` (``rdtsc`` on x86-64): one instruction, no call, and no
address baked into the machine code, so kernels using it keep loading from numba's on-disk cache in a new
process (a ctypes clock would pin a per-process address and defeat the cache). The counter runs at a constant
rate on CPUs with an invariant TSC (``constant_tsc``/``nonstop_tsc``); :func:`ns_per_cycle` measures that rate
against ``time.perf_counter_ns`` once per process. Reads are not serialized: a timed span is accurate to a few
tens of cycles, plenty for spans of 100 ns and more. On targets without a cycle counter LLVM returns 0 and
every span reads 0 ns.

>>> c = cycles_nb()
>>> cycles_nb() >= c
True
"""

from __future__ import annotations

import time

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["cycles_nb", "ns_per_cycle"]


@intrinsic
def _readcyclecounter(typingctx):
    sig = types.int64()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return sig, codegen


@njit(cache=True, inline="always")
def cycles_nb():
    """The CPU cycle counter (int64); differences times :func:`ns_per_cycle` are nanoseconds."""
    return _readcyclecounter()


_NS_PER_CYCLE: list[float] = []


def ns_per_cycle(span_s: float = 0.02) -> float:
    """Nanoseconds per counter cycle, measured once per process over ``span_s`` against ``perf_counter_ns``
    (0.0 when the target has no cycle counter)."""
    if _NS_PER_CYCLE:
        return _NS_PER_CYCLE[0]
    cycles_nb()  # load / compile first
    best = None
    for _ in range(3):
        t0 = time.perf_counter_ns()
        c0 = int(cycles_nb())
        while time.perf_counter_ns() - t0 < span_s * 1e9 / 3:
            pass
        c1 = int(cycles_nb())
        t1 = time.perf_counter_ns()
        if c1 > c0:
            r = (t1 - t0) / (c1 - c0)
            best = r if best is None else min(best, r)
    _NS_PER_CYCLE.append(0.0 if best is None else float(best))
    return _NS_PER_CYCLE[0]
