"""Keep freed memory in the process on CPU runs: glibc malloc set so the XLA:CPU step's temp
arena is reused across steps instead of being returned to the kernel and faulted in again.

XLA:CPU allocates each call's temp buffers afresh (B/16 VPT-deep batch 8: 1.9 GiB). With glibc's
defaults a block that large is mmap'ed, freed with munmap and faulted in page by page on the
next call: ~0.5M minor page faults and 1-3 s of system CPU per step (17% of the step's CPU on a
2-core EPYC; `benchmarks/page_faults.py`). `reuse_freed_memory` sets, through `mallopt`:

  M_ARENA_MAX = 1           every thread allocates from the main arena (a thread arena cannot
                            hold a block over 64 MiB, so it would mmap it regardless);
  M_MMAP_MAX = 0            large blocks come from the heap, not from mmap;
  M_TRIM_THRESHOLD = -1     freed heap memory stays in the process for the next step (-1 turns
                            trimming off; a positive int caps at 2 GiB, under a B/16 arena).

It changes no result, only where memory comes from; the process keeps its peak resident size
(as PyTorch's caching allocators do), and the heap can grow by a few copies of the temp arena
through fragmentation (an aligned block needs a little more room than the one freed): measured,
a B/16 step stays at 4.0 GiB over 40 steps; a 128 MiB temp grew the heap to 1.4 GiB within ten
calls, then stayed there. It is opt-in, PROMPT_JAX_MALLOC=reuse, because one arena
for every thread (and a heap that is never trimmed) slows a run whose time goes to many small
allocations: measured on a 2-core EPYC, the B/16 step runs 6.7 instead of 7.9 s (0 instead of
510k page faults), while the offline demo (a tiny ViT, the input pipeline's threads busy) takes
2:38 instead of 1:58 min (M_ARENA_MAX=1 alone: 2:21). It must run
before JAX's CPU backend exists (its worker threads take their arenas when created):
`prompt-jax` and `prompt-jax-sweep` call `maybe_apply` at start-up; in a notebook or the Python
API, call `reuse_freed_memory()` before the first JAX computation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from absl import logging

ENV = 'PROMPT_JAX_MALLOC'  # 'system' (default) or 'reuse'
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's malloc.h
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim


def _backend_exists() -> bool:
  import jax._src.xla_bridge as xb  # pylint: disable=g-import-not-at-top
  return bool(getattr(xb, 'backends_are_initialized', lambda: False)())


def reuse_freed_memory() -> bool:
  """Sets glibc malloc to keep and reuse freed memory (module docstring). Returns False, doing
  nothing, where the C library is not glibc; raises RuntimeError if JAX's backend already exists
  (too late: its threads have their arenas)."""
  if _backend_exists():
    raise RuntimeError('reuse_freed_memory() must run before the first JAX computation (JAX\'s '
                       'CPU backend already exists, its threads keep their malloc arenas): call '
                       'it first thing, or restart the process')
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  if not hasattr(libc, 'gnu_get_libc_version'):
    return False  # mallopt's parameters above are glibc's
  return all(mallopt(param, value) == 1 for param, value in _SETTINGS)


def maybe_apply() -> bool:
  """The entry points' call: `reuse_freed_memory()` when PROMPT_JAX_MALLOC=reuse (default
  `system`: nothing). Returns whether it was applied; with `reuse` once JAX's backend exists it
  logs a warning and returns False."""
  mode = os.environ.get(ENV, 'system')
  if mode not in ('system', 'reuse'):
    raise ValueError(f'{ENV}={mode!r}: use system (the default: glibc as it is) or reuse (keep '
                     'freed memory for the next step; prompt_jax/util/cpu_malloc.py)')
  if mode == 'system':
    return False
  if _backend_exists():
    logging.warning('%s=reuse ignored: JAX\'s backend already exists in this process (set it '
                    'before the first JAX computation)', ENV)
    return False
  return reuse_freed_memory()
