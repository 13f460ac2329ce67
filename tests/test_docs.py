"""The documentation a user reads: the README's size and line width, every relative link and
anchor, the documented shell commands (run, or their flags checked), no development history
outside CHANGELOG.md, and the generated parts (configuration keys, performance figures, the demo
table) in step with the code and the committed results.

A shell block in README.md, docs/*.md or benchmarks/README.md is preceded by a marker:
`<!-- docs-test: run -->` (each command runs here and must exit 0) or `<!-- docs-test: flags -->`
(needs data, weights or time: each prompt_jax command's flags must exist in its `--help`, each
`--config.KEY` must be a config key and each `--config=FILE` must exist).
"""

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
MAX_README_LINES, MAX_WIDTH = 300, 120
HISTORY = re.compile(r'\bstop [0-9]+|\bissue[ -][0-9]+|\b(earlier|previous|this|last) stop\b',
                     re.IGNORECASE)
# Where history may appear: the changelog; the structure test's docstring is rewritten on main.
HISTORY_ALLOWED = {'CHANGELOG.md', 'tests/test_structure.py'}
FENCE = re.compile(r'^```(\w*)[^\n]*\n(.*?)^```', re.MULTILINE | re.DOTALL)
MARKER = re.compile(r'<!-- docs-test: (run|flags) -->\s*$')
SHELL = ('bash', 'sh', 'shell', 'console')


def _read(rel: str) -> str:
  with open(os.path.join(ROOT, rel), encoding='utf-8') as f:
    return f.read()


def _documents() -> list[str]:
  docs = sorted(os.path.join('docs', n) for n in os.listdir(os.path.join(ROOT, 'docs'))
                if n.endswith('.md'))
  docs += sorted(os.path.join('docs', 'specs', n)
                 for n in os.listdir(os.path.join(ROOT, 'docs', 'specs')) if n.endswith('.md'))
  return ['README.md', 'CHANGELOG.md', 'benchmarks/README.md', 'colab/README.md', *docs]


@functools.cache
def _gen():
  spec = importlib.util.spec_from_file_location('docs_gen', os.path.join(ROOT, 'tools',
                                                                          'docs_gen.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


# ------------------------------------------------------------------------------------- README


def test_readme_is_short_and_narrow():
  from prompt_jax.protocol import demo
  text = _read('README.md')
  lines = text.splitlines()
  assert len(lines) <= MAX_README_LINES, (
      f'README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/')
  generated = text[text.index(demo.README_BEGIN):text.index(demo.README_END)].splitlines()
  wide = [f'README.md:{i}: {len(l)} chars' for i, l in enumerate(lines, 1)
          if len(l) > MAX_WIDTH and not l.startswith('|') and '://' not in l
          and l not in generated]
  assert not wide, f'README lines over {MAX_WIDTH} characters (tables and URLs excepted): {wide}'


# -------------------------------------------------------------------------------------- links


def _slug(heading: str) -> str:
  """The anchor MkDocs' toc (and GitHub) gives a heading."""
  text = re.sub(r'`|\*\*|\[|\]\([^)]*\)', '', heading.strip()).lower()
  text = re.sub(r'[^\w\s-]', '', text)
  return re.sub(r'[\s]+', '-', text.strip())


def _anchors(rel: str) -> set[str]:
  prose = FENCE.sub('', _read(rel))
  return {_slug(m) for m in re.findall(r'^#{1,6} (.+)$', prose, re.MULTILINE)}


def _links(rel: str) -> list[str]:
  prose = re.sub(r'`[^`\n]*`', '', FENCE.sub('', _read(rel)))
  return re.findall(r'\]\(([^)\s]+)\)', prose)


def test_every_relative_link_and_anchor_resolves():
  broken = []
  for rel in _documents():
    for target in _links(rel):
      if re.match(r'[a-z]+:', target):
        continue
      path, _, anchor = target.partition('#')
      dest = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
      if not os.path.exists(os.path.join(ROOT, dest)):
        broken.append(f'{rel}: {target} (no file {dest})')
      elif anchor and dest.endswith('.md') and anchor not in _anchors(dest):
        broken.append(f'{rel}: {target} (no heading #{anchor} in {dest})')
  assert not broken, f'broken links: {broken}'


# ----------------------------------------------------------------------------------- commands


def _shell_blocks() -> list[tuple[str, str, str]]:
  """[(where, marker, block)] for every shell block of the documents."""
  out = []
  for rel in _documents():
    text = _read(rel)
    for m in FENCE.finditer(text):
      if m.group(1) not in SHELL:
        continue
      before = text[:m.start()].rstrip('\n').rsplit('\n', 1)[-1]
      marker = MARKER.search(before)
      where = f'{rel}:{text[:m.start()].count(chr(10)) + 1}'
      out.append((where, marker.group(1) if marker else '', m.group(2)))
  return out


def _commands(block: str) -> list[list[str]]:
  """The block's commands as argument lists (continuations joined, comments and env dropped)."""
  out = []
  for line in block.replace('\\\n', ' ').splitlines():
    words = shlex.split(line, comments=True)
    while words and re.match(r'^[A-Z_][A-Z0-9_]*=', words[0]):
      words = words[1:]
    if words:
      out.append(words)
  return out


def _program(words: list[str]) -> tuple[list[str], list[str]] | None:
  """(the command that prints its --help, its arguments) for a prompt_jax or benchmark command."""
  if words[0].startswith('prompt-jax'):
    return [os.path.join(BIN, words[0])], words[1:]
  if words[0] in ('python', 'python3') and words[1:2] == ['-m'] and re.match(
      r'(prompt_jax|benchmarks)\.', words[2]):
    return [sys.executable, '-m', words[2]], words[3:]
  return None


@functools.cache
def _help(command: tuple[str, ...]) -> str:
  out = subprocess.run([*command, '--help'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  return out.stdout + out.stderr


def _flag_problems(words: list[str]) -> list[str]:
  found = _program(words)
  if found is None:
    return []
  command, args = found
  keys = set(_gen().config_keys())
  problems = []
  for arg in args:
    if not arg.startswith('--'):
      continue
    name, _, value = arg[2:].partition('=')
    if name.startswith('config.'):
      if name[len('config.'):] not in keys:
        problems.append(f'{arg}: no config key {name[len("config."):]}')
    elif name == 'config' and value.startswith('configs/'):
      if not os.path.exists(os.path.join(ROOT, value.split(':')[0])):
        problems.append(f'{arg}: no file {value.split(":")[0]}')
    elif f'--{name}' not in _help(tuple(command)):
      problems.append(f'{arg}: not in the --help of {shlex.join(command)}')
  return problems


def test_every_shell_block_is_marked():
  unmarked = [where for where, marker, _ in _shell_blocks() if not marker]
  assert not unmarked, ('shell blocks without <!-- docs-test: run --> or <!-- docs-test: flags -->'
                        f' on the line before: {unmarked}')


def test_documented_flags_exist():
  problems = [f'{where}: {p}' for where, _, block in _shell_blocks()
              for words in _commands(block) for p in _flag_problems(words)]
  assert not problems, problems


@pytest.mark.parametrize('where,block', [(w, b) for w, m, b in _shell_blocks() if m == 'run'])
def test_runnable_commands_run(where, block):
  env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
  for words in _commands(block):
    out = subprocess.run(words, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f'{where}: {shlex.join(words)} exited {out.returncode}:\n' + (
        out.stderr[-2000:])


def test_python_blocks_parse():
  bad = []
  for rel in _documents():
    for m in FENCE.finditer(_read(rel)):
      if m.group(1) == 'python':
        try:
          compile(m.group(2), rel, 'exec')
        except SyntaxError as e:
          bad.append(f'{rel}: {e}')
  assert not bad, bad


# ------------------------------------------------------------------------------------ history


def test_no_development_history_outside_the_changelog():
  files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  found = []
  for rel in files:
    if rel in HISTORY_ALLOWED or not os.path.isfile(os.path.join(ROOT, rel)):
      continue
    try:
      text = _read(rel)
    except UnicodeDecodeError:
      continue
    found += [f'{rel}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)!r}'
              for m in HISTORY.finditer(text)]
  assert not found, ('development history belongs in CHANGELOG.md; say why the code is as it is '
                     f'today instead: {found}')


# ---------------------------------------------------------------------------- generated parts


def test_configuration_guide_lists_exactly_the_config_keys():
  listed = re.findall(r'^\| `([\w.]+)` \|', _read('docs/configuration.md'), re.MULTILINE)
  keys = _gen().config_keys()
  missing, extra = sorted(set(keys) - set(listed)), sorted(set(listed) - set(keys))
  assert not missing and not extra, (
      f'docs/configuration.md: keys without a line {missing}, lines without a key {extra}; '
      'run python tools/docs_gen.py')
  undocumented = re.findall(r'^\| `([\w.]+)` \| `[^|]*` \|\s*\|$', _read('docs/configuration.md'),
                            re.MULTILINE)
  assert not undocumented, f'config keys without a comment in the code: {undocumented}'
  assert _read('docs/configuration.md') == _gen().configuration_md(), (
      'docs/configuration.md is out of date; run python tools/docs_gen.py')


def test_performance_guide_is_generated_from_the_results():
  undated = lambda text: re.sub(r'\b\d{4}-\d{2}-\d{2}\b|\buncommitted\b', 'DATE', text)
  assert undated(_read('docs/performance.md')) == undated(_gen().performance_md()), (
      'docs/performance.md differs from benchmarks/results; run python tools/docs_gen.py')


def test_readme_numbers_come_from_the_results_file():
  assert _read('README.md') == _gen().readme_text(), (
      'the README demo block differs from docs/demo_results.json; run python tools/docs_gen.py')
