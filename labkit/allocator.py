"""Let freed memory be reused on Linux, so PyTorch on the CPU stops zero-filling fresh pages.

A network allocates its activations anew on every batch and frees them after it. glibc's malloc
serves each large allocation with fresh pages from the kernel and hands the pages back when it is
freed, so the next batch faults in and zero-fills the same memory again: on this project's 2-core
machine, a quarter of the CPU time of training and evaluating on the like-full set went on page
faults in the kernel (README, "Memory reuse on the CPU", has the measurements). PyTorch's CPU
performance guide recommends jemalloc or tcmalloc for this; the two glibc settings below get most
of the gain with nothing to install:

- `M_MMAP_THRESHOLD` 32 MB (glibc's largest): allocations up to it come from the heap, not from
  a fresh mapping each time;
- `M_TOP_PAD` 512 MB: when the heap shrinks, up to this much freed memory stays with the process
  for the next batch instead of going back to the kernel.

They apply from `import labkit` on, to the whole process. Glibc's defaults stay when, before
Python starts (or before the first `import labkit`), `LABKIT_MALLOC=default` is set, malloc is
tuned through `MALLOC_*` or `GLIBC_TUNABLES=glibc.malloc.*`, or another allocator (jemalloc,
tcmalloc, mimalloc) is preloaded with `LD_PRELOAD`.
"""

import ctypes
import os
import sys

M_TOP_PAD = -2  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
SETTINGS = {M_MMAP_THRESHOLD: 32 * 1024 * 1024, M_TOP_PAD: 512 * 1024 * 1024}
NAMES = {M_MMAP_THRESHOLD: "M_MMAP_THRESHOLD", M_TOP_PAD: "M_TOP_PAD"}
OPT_OUT = "LABKIT_MALLOC"  # "default": leave malloc as glibc configures it
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")  # named in LD_PRELOAD: glibc's malloc is not in use
applied = False  # whether reuse_freed_memory() changed this process's malloc


def user_tunes_malloc() -> bool:
    """True when the environment opts out, configures glibc's malloc itself, or preloads another
    allocator (then glibc's `mallopt` would still answer, but for an allocator nobody uses)."""
    environment = os.environ
    return (environment.get(OPT_OUT, "").lower() == "default"
            or any(name.startswith("MALLOC_") for name in environment)
            or "glibc.malloc." in environment.get("GLIBC_TUNABLES", "")
            or any(name in environment.get("LD_PRELOAD", "") for name in OTHER_ALLOCATORS))


def supported() -> bool:
    """Whether these settings can apply here at all: Linux with glibc."""
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr, or a C library that does not know the name
        return False


def reuse_freed_memory() -> bool:
    """Apply SETTINGS through glibc's `mallopt`; True when they took effect.

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


def description() -> str:
    """How this process's malloc is set up, in words, for benchmark reports."""
    if applied:
        return ", ".join(f"{NAMES[option]} {value // 2**20} MB" for option, value in SETTINGS.items())
    if user_tunes_malloc():
        return "left to the environment (LABKIT_MALLOC, MALLOC_*, GLIBC_TUNABLES or LD_PRELOAD)"
    return "the C library's defaults"
