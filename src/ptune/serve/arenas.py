"""The server process's malloc arenas, limited so that its RSS grows by what its resident prompts cost.

Standard library only: a process sets it before its threads start, without loading torch first.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's malloc gives each thread that allocates its own arena (up to 8 per core), and each arena keeps
# what was freed in it. A server loads and drops prompts on its event loop, runs passes on a worker and
# parses requests on others. Measured with `benchmarks/serve.py --tasks 1 10000 --no-ray --rounds 1` (10,000
# deep prompts, a 285 MiB budget, the resident set full; one run each, on 2 cores shared with other jobs,
# the limit set by the MALLOC_ARENA_MAX variable): the 10,000-task server's anonymous memory grew 55.7 MiB
# over the 1-task server's with glibc's default and 9.5 MiB with 2 arenas; RSS grew 1.16x and 1.00x the budget.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """At most ``count`` glibc malloc arenas from now on (threads already given one keep it), unless the
    user set ``MALLOC_ARENA_MAX``; True when the limit was set. Elsewhere than glibc: nothing, False."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
