"""What both benchmarks measure the same way: device synchronisation and the CPU's peak step memory."""
from __future__ import annotations

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_peak_memory(step) -> int:
    """Bytes live at the peak of one step, counting what the step allocates (the CPU profiler's timeline).

    The CPU allocator keeps no peak statistics; the profiler's memory timeline records every allocation.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        live += size if action == Action.CREATE else -size if action == Action.DESTROY else 0
        peak = max(peak, live)
    return peak
