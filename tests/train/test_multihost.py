"""Multi-host: the two-process example of docs/multi_host.md (jax.distributed on localhost, CPU
collectives) trains with per-process data shards, writes its checkpoint once, and matches one
process training the same config; its checkpoint and export restore in a single process."""

import json
import os
import re
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUIDE = os.path.join(ROOT, 'docs', 'multi_host.md')


def guide_example() -> str:
  """The bash block between the multi-host-example markers of the guide."""
  with open(GUIDE) as f:
    text = f.read()
  m = re.search(r'<!-- multi-host-example:.*?-->\s*```bash\n(.*?)```\s*'
                r'<!-- end multi-host-example -->', text, re.S)
  assert m, 'docs/multi_host.md lost its multi-host-example block'
  return m.group(1)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, pretrained_npz):
  from prompt_jax.train import checkpointing
  from prompt_jax.export import tuned as export
  from prompt_jax.train import trainer as train
  from prompt_jax.util import tree
  from prompt_jax.data import registry
  work2 = tmp_path / 'two'
  env = dict(os.environ, WORKDIR=str(work2), CKPT=pretrained_npz, PORT=str(_free_port()),
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
  for k in ('XLA_FLAGS', 'JAX_PLATFORMS'):
    env.pop(k, None)
  out = subprocess.run(['bash', '-c', 'set -e\n' + guide_example()], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
  logs = '\n'.join((tmp_path / f'two.process{i}.log').read_text()[-3000:] for i in range(2)
                   if (tmp_path / f'two.process{i}.log').exists())
  assert out.returncode == 0 and (work2 / 'results.json').exists(), logs + out.stderr[-2000:]
  two = json.loads((work2 / 'results.json').read_text())
  # Both processes ran the job (each logged its eval); one checkpoint step, one results.json.
  for i in range(2):
    assert "'test': " in (tmp_path / f'two.process{i}.log').read_text()
  steps = sorted(p.name for p in (work2 / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [str(two['steps'])]
  assert two['config']['mesh']['distributed'] is True

  # One process, same config: same parameters (up to the all-reduce's float order) and accuracy.
  cfg = ml_collections.ConfigDict(two['config'])
  cfg.mesh.distributed = False
  cfg.lock()
  one = train.train_and_evaluate(cfg, str(tmp_path / 'one'))
  assert one['history'] == two['history']
  restored_one = checkpointing.restore_state(str(tmp_path / 'one'))
  # Saved on a 2-process mesh: restored onto this process's devices by giving a target.
  restored_two = checkpointing.restore_state(str(work2), like=restored_one)
  flat_two, flat_one = (tree.flat(jax.device_get(s['trainable']))
                        for s in (restored_two, restored_one))
  assert sorted(flat_two) == sorted(flat_one)
  for k in flat_one:
    np.testing.assert_allclose(flat_two[k], flat_one[k], atol=1e-5, err_msg=k)

  # The multi-host export restores in this single process and gives the reported accuracy.
  model, params, _ = export.load_tuned(pretrained_npz, str(work2 / 'tuned'))
  src = registry.get_source(cfg.data)
  correct = total = 0
  for b in src.iterate('test', 256):
    logits, _ = model.apply({'params': params}, b['image'])
    correct += int(((np.asarray(logits).argmax(-1) == b['label']) & b['mask']).sum())
    total += int(b['mask'].sum())
  assert correct / total == pytest.approx(two['test'], abs=1e-6)
