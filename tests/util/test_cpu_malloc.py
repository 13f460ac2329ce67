"""PROMPT_JAX_MALLOC=reuse: a jitted function with a large temp buffer stops faulting in fresh
pages every call; the switch, its errors and when it is too late."""

import json
import os
import subprocess
import sys

import pytest

from prompt_jax.util import cpu_malloc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Page faults of each call of a function whose XLA temp buffer (sin(x), 256 MiB) is allocated
# each call. The optimization barrier keeps that buffer on every XLA version (JAX 0.12.1's
# XLA:CPU otherwise fuses sin(x) into the dot and allocates nothing). With reuse most calls
# fault nothing, but not every one: glibc's aligned allocation of a block needs a little more
# than the block freed, so the heap still grows on some calls (more often early) until it holds
# enough free room.
_PROBE = r'''
import json, resource, sys
from prompt_jax.util import cpu_malloc
applied = cpu_malloc.maybe_apply()
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: (jax.lax.optimization_barrier(jnp.sin(x)) @ w).sum())
x, w = jnp.ones((16384, 4096), jnp.float32), jnp.ones((4096, 64), jnp.float32)
faults = []
for _ in range(20):
  r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x, w).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(json.dumps({'applied': applied, 'faults': faults[4:]}))
'''


def _probe(mode):
  env = {**os.environ, cpu_malloc.ENV: mode}
  out = subprocess.run([sys.executable, '-c', _PROBE], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc')
def test_reuse_stops_the_per_call_page_faults():
  system, reuse = _probe('system'), _probe('reuse')
  assert not system['applied'] and reuse['applied']
  # 256 MiB of 4 KiB pages: ~65k faults a call when each call maps its buffer afresh.
  assert min(system['faults']) > 10_000, system
  quiet = sum(n < 1_000 for n in reuse['faults'])
  assert quiet >= len(reuse['faults']) // 4, reuse  # measured: 10-15 of 16

def test_mode_is_checked(monkeypatch):
  monkeypatch.setenv(cpu_malloc.ENV, 'often')
  with pytest.raises(ValueError, match='use system .* or reuse'):
    cpu_malloc.maybe_apply()
  monkeypatch.delenv(cpu_malloc.ENV)
  assert not cpu_malloc.maybe_apply()  # the default leaves malloc alone


def test_too_late_once_the_backend_exists(monkeypatch, caplog):
  import jax
  jax.devices()
  with pytest.raises(RuntimeError, match='before the first JAX computation'):
    cpu_malloc.reuse_freed_memory()
  monkeypatch.setenv(cpu_malloc.ENV, 'reuse')
  assert not cpu_malloc.maybe_apply()  # the entry points' call only warns then
  assert 'reuse ignored' in caplog.text
