"""Per-thread scratch memory for the posterior kernel's large temporaries (the logits of the point-by-point
kernel, the factor tables of the factorised grid kernel).

Allocated afresh, a block of tens of MiB is mapped anew by the allocator on every call (it lies above glibc's
mmap threshold), and faulting its pages in costs more than the arithmetic that fills it: 92 ms against 57 ms per
point-by-point call for 3072 points and 2000 components (the Swiss roll's g3 task 23-27 s against 20-21 s), and
11 ms against 4 ms per factorised call on the Swiss roll's grids. Reused, the block stays mapped. A caller owns
the buffer until it returns (nothing it returns may alias the buffer: the next call overwrites it); calls that
autograd records must allocate their own.
"""

from __future__ import annotations

import threading

import torch


class _Buffers(threading.local):
    """Per thread: one flat buffer per device and dtype."""

    def __init__(self):
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


_BUFFERS = _Buffers()


def scratch(size: int, like: torch.Tensor) -> torch.Tensor:
    """A flat buffer of at least ``size`` elements of ``like``'s device and dtype, kept per thread and grown when
    a call needs more."""
    key = (like.device, like.dtype)
    buffer = _BUFFERS.buffers.get(key)
    if buffer is None or buffer.numel() < size:
        _BUFFERS.buffers[key] = buffer = torch.empty(size, dtype=like.dtype, device=like.device)
    return buffer
