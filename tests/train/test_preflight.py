"""prompt_jax/train/preflight.py through the CLI: each start-up mistake is one message with its fix,
exit code 2, in a process that never imports TensorFlow."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Runs the CLI, then reports on stderr whether TensorFlow was imported (atexit: after sys.exit).
WRAPPER = ("import atexit, sys; atexit.register(lambda: print('tensorflow imported:', "
           "'tensorflow' in sys.modules, file=sys.stderr)); from prompt_jax import main; "
           "sys.argv = ['prompt-jax'] + sys.argv[1:]; main.run()")


def _vtab1k(root, n_train=2):
  """data_dir/cifar/{train800,val200,train800val200,test}.txt listing n_train training images."""
  d = root / 'cifar'
  d.mkdir(parents=True)
  for split, n in (('train800', n_train), ('val200', 1), ('train800val200', n_train + 1),
                   ('test', 1)):
    (d / f'{split}.txt').write_text(''.join(f'img{i}.png 0\n' for i in range(n)))
  return str(root)


VTAB = ['--config=configs/vpt_vtab.py:task=dtd', '--config.init.checkpoint=random']
FOLDER = ['--config.data.source=folder', '--config.data.task=cifar',
          '--config.data.data_dir={data}']
CASES = {
    'backbone_missing': ([*VTAB, '--config.init.checkpoint={tmp}/ViT-B_16.npz', *FOLDER],
                         "init.checkpoint='{tmp}/ViT-B_16.npz': no such file or directory"),
    'unknown_key': (['--config=configs/demo.py', '--config.train.lrr=1'],
                    "unknown config key 'lrr' in --config.train.lrr: Did you mean \"lr\""),
    'unknown_task': (['--config=configs/vpt_vtab.py', '--config.init.checkpoint=random',
                      '--config.data.task=cifar1000'],
                     "data.task='cifar1000': not a VTAB-1k task; one of caltech101"),
    'dataset_missing': ([*VTAB, '--config.data.data_dir={tmp}'],
                        'the TFDS dataset dtd:3.*.* is not prepared under '
                        "data.data_dir='{tmp}'; prepare it with `python -m prompt_jax.data.prepare "
                        '--tasks=dtd'),
    'batch_over_split': ([*VTAB, *FOLDER, '--config.train.drop_last=True'],
                         "train.batch_size=128 exceeds the 3 examples of data.train_split="
                         "'train800val200': with train.drop_last=True no step would run"),
    'workdir_read_only': (['--config=configs/demo.py', '--workdir=/sys/prompt_jax_wd'],
                          '--workdir=/sys/prompt_jax_wd: cannot write there'),
    'config_syntax_error': (['--config={tmp}/bad.py'],
                            'the config file {tmp}/bad.py does not parse: invalid syntax (line 1)'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_a_startup_mistake_is_one_line_exit_2_without_tensorflow(tmp_path, case):
  args, expected = CASES[case]
  data = _vtab1k(tmp_path / 'vtab-1k')
  (tmp_path / 'bad.py').write_text('def get_config(:\n  pass\n')
  fill = lambda s: s.replace('{tmp}', str(tmp_path)).replace('{data}', data)
  if case == 'workdir_read_only':  # /sys refuses new directories, even to root
    try:
      os.mkdir('/sys/prompt_jax_wd')
    except OSError:
      pass
    else:
      os.rmdir('/sys/prompt_jax_wd')
      pytest.skip('/sys is writable here')
  workdir = [] if any(a.startswith('--workdir') for a in args) else [f'--workdir={tmp_path}/wd']
  out = subprocess.run([sys.executable, '-c', WRAPPER, *map(fill, args), *workdir], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  err = out.stderr
  assert out.returncode == 2, err[-3000:]
  assert 'tensorflow imported: False' in err, err[-3000:]
  message = err.replace('tensorflow imported: False\n', '')
  assert 'Traceback' not in message and len(message.strip().splitlines()) < 5, message
  assert fill(expected) in message, message
  assert not os.path.exists(tmp_path / 'wd' / 'results.json')


def test_split_names_known_before_loading_are_the_sources_own():
  """preflight.split_names and the digits sizes (told without loading) against what the loaded
  sources and the VTAB definitions build."""
  from prompt_jax.data import digits
  from prompt_jax.data import tasks
  from prompt_jax.data import vtab
  from prompt_jax.train import preflight
  for task in vtab.TASKS.values():
    assert tuple(task.split_strings(10000)) == preflight.split_names(
        {'source': 'vtab', 'task': 'dtd'})
  for name in ('pretrain', 'downstream'):
    got = preflight.split_names({'source': 'digits', 'task': name})
    source = digits.digits_source(name, 8)
    assert sorted(got) == sorted(source.splits)
    assert digits.split_sizes(name) == dict(source.splits)
  assert preflight.split_names({'source': 'folder', 'layout': 'fgvc'}) == tasks.FGVC_SPLITS
  assert preflight.split_names({'source': 'folder', 'layout': 'vtab1k'}) is None
