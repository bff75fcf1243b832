"""The server process's glibc malloc, set so that its RSS grows by what its resident prompts cost.

Standard library only: a process sets it before its threads start, without loading torch first.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

# Two settings, each measured with `benchmarks/serve.py --tasks 1 10000 --no-ray --rounds 1 --seconds 4`
# (10,000 deep prompts, a 285 MiB budget, the resident set full; the 10,000-task server's anonymous
# memory over the 1-task server's, one run each on 2 cores shared with other jobs, set by the variables):
# - arenas: glibc gives each thread that allocates an arena of its own (up to 8 per core), and each keeps
#   what was freed in it. The server loads and drops prompts on its event loop, runs passes on a worker
#   and parses requests on others. Anonymous growth 55.7 MiB with glibc's default, 9.5 MiB with 2 arenas.
# - the mmap threshold: a block at least this large is mapped on its own and returned to the system when
#   freed. glibc raises the threshold to the size of every mapped block freed (up to 32 MiB), after which
#   blocks that large come from the heap and stay there, fragmented. A mixed-task pass stacks the deep
#   prompts of the tasks in it into tensors of several MiB whose size changes with the number of tasks,
#   so the 10,000-task server's heap grew where the 1-task server's did not. With 2 arenas alone:
#   anonymous growth 50.5 MiB, RSS 1.14x the budget; with the threshold also fixed at 1 MiB (which stops
#   the raising): 3.8 MiB and 0.98x. (Two runs back to back, the first with MALLOC_MMAP_THRESHOLD_=1048576.)
#   What the mapping costs, on 2 idle cores, --rounds 2 --seconds 6, against a threshold of 8 MiB (which
#   still maps the stacked prompts of a full pass): single-task req/s 44.9 and 44.3 (1 and 10,000 tasks)
#   against 46.1 and 44.3, anonymous growth 17.7 against 12.2 MiB: the same within the rounds' spread.
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 1024 * 1024
M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # mallopt's parameter numbers (glibc's malloc.h)


def limit_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> dict[str, bool]:
    """At most ``arenas`` glibc malloc arenas from now on (threads already given one keep it), and blocks
    of ``mmap_threshold`` bytes or more mapped on their own, each unless the user set its variable
    (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``); says which was set. Elsewhere than glibc: neither."""
    wanted = {"arenas": ("MALLOC_ARENA_MAX", M_ARENA_MAX, arenas),
              "mmap_threshold": ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, mmap_threshold)}
    done = dict.fromkeys(wanted, False)
    if not sys.platform.startswith("linux"):
        return done
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return done
    for name, (variable, parameter, value) in wanted.items():
        if not os.environ.get(variable):
            done[name] = bool(mallopt(parameter, value))
    return done


# How often the server hands its heap's free pages back (``Trim``). Measured with `benchmarks/serve.py`'s servers
# (1 and 10,000 deep prompts, 285 MiB budget, 8 clients; malloc_trim(0) called from outside after the rounds):
# anonymous RSS fell 10.5-13.2 MiB at 1 task and 14.6 MiB at 10,000, and the 1-task server's, which varied
# by 10 MiB from run to run (321.6-331.7 MiB over 3 runs of the same traffic), fell to 317.9-318.7: what
# was left above the resident set was freed memory kept by malloc, in amounts that depend on the traffic.
TRIM_EVERY_S = 2.0


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


class Trim:
    """glibc's ``malloc_trim(0)``: free pages anywhere in the heap returned to the system. The server calls it
    between passes at most once every ``every`` seconds, and once when it falls idle after a pass, so that its RSS
    is its live memory rather than whatever its last passes' temporaries left. Does nothing elsewhere than glibc.
    ``pending``: a pass has run since the last trim; ``seconds``: the time trimming has taken."""

    def __init__(self, every: float = TRIM_EVERY_S):
        self._trim = _malloc_trim()
        self.every, self.last = every, time.monotonic()
        self.calls, self.seconds = 0, 0.0
        self.pending = False

    @property
    def available(self) -> bool:
        return self._trim is not None

    def due(self) -> bool:
        return self.available and self.pending and time.monotonic() - self.last >= self.every

    def __call__(self, idle: bool = False) -> None:
        """Trim if due (``idle``: if a pass has run since the last trim, however recently)."""
        if not (self.due() or (idle and self.available and self.pending)):
            return
        self.pending = False
        started = time.perf_counter()
        self._trim(0)
        self.last = time.monotonic()
        self.calls, self.seconds = self.calls + 1, self.seconds + time.perf_counter() - started
