"""Let freed memory be reused on Linux, so PyTorch on the CPU stops zero-filling fresh pages.

A network allocates its activations anew on every batch and frees them after it. glibc's malloc
serves each large allocation with fresh pages from the kernel and hands the pages back when it is
freed, so the next batch faults in and zero-fills the same memory again: on this project's 2-core
machine, a quarter of the CPU time of training and evaluating on the like-full set went on page
faults in the kernel (docs/memory-reuse.md has the measurements). PyTorch's CPU performance guide
recommends jemalloc or tcmalloc for this; two glibc settings get most of the gain with nothing to
install:

- the mmap threshold, 32 MB (glibc's largest): allocations up to it come from the heap, not from
  a fresh mapping each time;
- the top pad, 512 MB: when the heap shrinks, up to this much freed memory stays with the process
  for the next batch instead of going back to the kernel.

Nothing happens on `import labkit`: the settings cost up to 512 MB of memory a process keeps, so
they are turned on where the work is. The command line sets them in its own process
(`reuse_freed_memory`, through glibc's `mallopt`); the workbook runner and the benchmarks start
their notebook kernels and child processes with them (`environment_for_children`, through
`GLIBC_TUNABLES`, which glibc reads when a process starts). Glibc's defaults stay when
`LABKIT_MALLOC=default` is set, when malloc is tuned through `MALLOC_*` or
`GLIBC_TUNABLES=glibc.malloc.*`, or when another allocator (jemalloc, tcmalloc, mimalloc) is
preloaded with `LD_PRELOAD`.
"""

import contextlib
import ctypes
import os
import sys
from collections.abc import Mapping

M_TOP_PAD = -2  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TOP_PAD_BYTES = 512 * 1024 * 1024
SETTINGS = {M_MMAP_THRESHOLD: MMAP_THRESHOLD_BYTES, M_TOP_PAD: TOP_PAD_BYTES}  # for mallopt, in this process
NAMES = {M_MMAP_THRESHOLD: "M_MMAP_THRESHOLD", M_TOP_PAD: "M_TOP_PAD"}
# The same two settings as glibc's tunables (glibc manual, "Memory Allocation Tunables"), for processes
# about to start.
TUNABLES = {"glibc.malloc.mmap_threshold": MMAP_THRESHOLD_BYTES, "glibc.malloc.top_pad": TOP_PAD_BYTES}
MALLOC_TUNABLE = "glibc.malloc."
OPT_OUT = "LABKIT_MALLOC"  # "default": leave malloc as glibc configures it
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")  # named in LD_PRELOAD: glibc's malloc is not in use
applied = False  # whether reuse_freed_memory() changed this process's malloc


def malloc_tunables(environment: Mapping[str, str]) -> set[str]:
    """The `glibc.malloc.*` entries of GLIBC_TUNABLES ("name=value" each)."""
    entries = environment.get("GLIBC_TUNABLES", "").split(":")
    return {entry for entry in entries if entry.startswith(MALLOC_TUNABLE)}


def labkits_tunables() -> set[str]:
    return {f"{name}={value}" for name, value in TUNABLES.items()}


def started_with_reuse(environment: Mapping[str, str] | None = None) -> bool:
    """True when the environment holds exactly labkit's tunables: this process started with them,
    set by a labkit parent (the workbook runner, a benchmark)."""
    return malloc_tunables(os.environ if environment is None else environment) == labkits_tunables()


def user_tunes_malloc(environment: Mapping[str, str] | None = None) -> bool:
    """True when the environment opts out, configures glibc's malloc itself, or preloads another
    allocator (then glibc's `mallopt` would still answer, but for an allocator nobody uses).
    Labkit's own tunables, inherited from a labkit parent, are not the user's."""
    environment = os.environ if environment is None else environment
    return (environment.get(OPT_OUT, "").lower() == "default"
            or any(name.startswith("MALLOC_") for name in environment)
            or (bool(malloc_tunables(environment)) and not started_with_reuse(environment))
            or any(name in environment.get("LD_PRELOAD", "") for name in OTHER_ALLOCATORS))


def supported() -> bool:
    """Whether these settings can apply here at all: Linux with glibc."""
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr, or a C library that does not know the name
        return False


def reuse_freed_memory() -> bool:
    """Apply SETTINGS to this process through glibc's `mallopt`; True when they took effect.

    Does nothing (and returns False) where not `supported()` or when `user_tunes_malloc()`.
    """
    if not supported() or user_tunes_malloc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl (Alpine) and other C libraries
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    accepted = [mallopt(option, value) == 1 for option, value in SETTINGS.items()]  # every one, even after a refusal
    global applied
    applied = all(accepted)
    return applied


def environment_for_children(environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environment` (default: this process's) with labkit's settings added to GLIBC_TUNABLES, for
    a process about to start: glibc reads them before any Python runs. Returned unchanged where
    not `supported()` or when it tunes malloc itself; other tunables it sets are kept."""
    environment = dict(os.environ if environment is None else environment)
    if not supported() or user_tunes_malloc(environment) or started_with_reuse(environment):
        return environment
    others = [entry for entry in environment.get("GLIBC_TUNABLES", "").split(":") if entry]
    environment["GLIBC_TUNABLES"] = ":".join([*others, *sorted(labkits_tunables())])
    return environment


@contextlib.contextmanager
def children_start_with_reuse():
    """Within the block, processes started from this one with its environment (multiprocessing's
    spawn, subprocess without `env=`) start with labkit's settings; this process's own malloc and,
    after the block, its environment are as they were."""
    saved = os.environ.get("GLIBC_TUNABLES")
    os.environ.update(environment_for_children())  # changes GLIBC_TUNABLES alone
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = saved


def in_effect() -> bool:
    """Whether this process runs with labkit's settings, set by `mallopt` or at its start."""
    return applied or (supported() and started_with_reuse())


def description() -> str:
    """How this process's malloc is set up, in words, for benchmark reports."""
    if applied:
        return ", ".join(f"{NAMES[option]} {value // 2**20} MB" for option, value in SETTINGS.items())
    if supported() and started_with_reuse():
        return ", ".join(f"{name} {value // 2**20} MB" for name, value in TUNABLES.items()) + " (GLIBC_TUNABLES)"
    if user_tunes_malloc():
        return "left to the environment (LABKIT_MALLOC, MALLOC_*, GLIBC_TUNABLES or LD_PRELOAD)"
    return "the C library's defaults"
