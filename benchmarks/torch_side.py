"""PyTorch beside TensorFlow in one benchmark process.

CUDA builds of torch import triton lazily (on the first torch.optim constructor or torch.compile).
triton and TensorFlow each carry a statically linked LLVM, and loading triton's library after
TensorFlow's kills the process inside that import: `import tensorflow; import triton` aborts with
"LLVM ERROR: ... Option 'bitcode-mdindex-threshold' registered more than once" (triton 3.9.0,
tensorflow-cpu 2.21, Python 3.12; reported as a segmentation fault, exit 139, with triton 3.7.1
under torch 2.13.0+cu130). JAX is not the trigger; the CPU build of torch has no triton. Loaded
first, triton is fine (then TensorFlow and JAX both import and run): `load_triton_first` runs
when the benchmarks package is imported, in the parent and in every spawned candidate process,
before prompt_jax pulls TensorFlow in. `problem` checks the same import order in a child process
first, so a stack where it still crashes gives one line instead of a dead benchmark.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a PyTorch candidate does in a benchmark process: the benchmarks package (triton first),
# TensorFlow (prompt_jax's input pipeline), then torch.optim, which imports triton where installed.
PROBE = ('import benchmarks, tensorflow, torch; '
         'torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step()')


def load_triton_first() -> None:
  """Imports triton now when it is installed and TensorFlow is not loaded yet."""
  if 'tensorflow' in sys.modules or 'triton' in sys.modules:
    return
  if importlib.util.find_spec('triton') is None:
    return
  import triton  # noqa: F401  (before TensorFlow: see the module docstring)


def problem(timeout_s: float = 300.0) -> str | None:
  """None when PyTorch can run beside TensorFlow in this interpreter, else one line saying why
  and what to do."""
  if importlib.util.find_spec('torch') is None:
    return (f'torch is not installed in {sys.executable}: pip install torch (or pass --no_torch '
            'for the JAX rows alone)')
  return probe_problem(PROBE, timeout_s)


def probe_problem(probe: str, timeout_s: float = 300.0) -> str | None:
  """Runs `probe` (Python source) in a child process: a crash there cannot take the benchmark
  down. None when it exits 0, else one line naming the failure or the signal."""
  try:
    out = subprocess.run([sys.executable, '-c', probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout_s)
  except subprocess.TimeoutExpired:
    return f'importing torch beside TensorFlow took over {timeout_s:.0f} s in {sys.executable}'
  if out.returncode == 0:
    return None
  if out.returncode > 0:
    last = (out.stderr.strip().splitlines() or ['no message'])[-1]
    return (f'torch beside TensorFlow fails in {sys.executable}: {last[:300]} (or pass '
            '--no_torch for the JAX rows alone)')
  try:
    sig = signal.Signals(-out.returncode).name
  except ValueError:
    sig = f'signal {-out.returncode}'
  return (f'torch beside TensorFlow dies of {sig} in {sys.executable} (a CUDA torch whose triton '
          'crashes after TensorFlow): install the CPU build (pip install torch --index-url '
          'https://download.pytorch.org/whl/cpu) or pass --no_torch for the JAX rows alone')


def exit_if_problem(prog: str) -> None:
  """Exits with `problem()`'s line (status 1) when PyTorch cannot run beside TensorFlow here."""
  line = problem()
  if line:
    sys.exit(f'{prog}: {line}')
