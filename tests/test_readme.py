"""The README's layout table matches the tree: every path it names exists, and every module and
package of prompt_jax/ (and every top-level folder) is named in it (a folder also by a path in
it)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = ('configs', 'benchmarks', 'tests', 'colab', 'docs')


def _layout_rows() -> list[tuple[list[str], list[str]]]:
  """[(first-column names, other names)] of the backticked, path-like names in each row."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  section = text.split('\n## Layout\n', 1)[1].split('\n## ', 1)[0]
  rows = []
  for line in section.splitlines():
    cells = line.split('|')[1:-1]
    if len(cells) < 2 or cells[0].strip() in ('path', '---'):
      continue
    names = [re.findall(r'`([^`\s]+)`', c) for c in cells]
    pathlike = lambda ns: [n for n in ns if '/' in n or re.search(r'\.(py|md|toml)$', n)
                           or n == '.ci/run']
    rows.append((pathlike(names[0]), pathlike(sum(names[1:], []))))
  assert rows, 'no layout table found under "## Layout"'
  return rows


def _resolve(name: str, row_paths: list[str]) -> str | None:
  """A row's names are from the repository root; names in its description may also be relative
  to the row's folder, its parent, or prompt_jax/."""
  bases = ['', 'prompt_jax']
  for p in row_paths:
    bases += [p, os.path.dirname(p.rstrip('/'))]
  for base in bases:
    path = os.path.normpath(os.path.join(ROOT, base, name))
    if os.path.exists(path):
      return path
  return None


def test_every_named_path_exists_and_every_module_is_named():
  named, missing = set(), []
  for first, rest in _layout_rows():
    for name in first:
      path = os.path.normpath(os.path.join(ROOT, name))
      (named.add(path) if os.path.exists(path) else missing.append(name))
    for name in rest:
      path = _resolve(name, first)
      (named.add(path) if path else missing.append(name))
  assert not missing, f'the README layout table names paths that do not exist: {missing}'
  pkg = os.path.join(ROOT, 'prompt_jax')
  expected = [os.path.join(pkg, n) for n in os.listdir(pkg)
              if (n.endswith('.py') and n != '__init__.py')
              or os.path.isfile(os.path.join(pkg, n, '__init__.py'))]
  expected += [os.path.join(ROOT, n) for n in TOP_LEVEL]
  # a folder is named by itself or by a path inside it
  unnamed = sorted(os.path.relpath(p, ROOT) for p in expected
                   if p not in named and not any(n.startswith(p + os.sep) for n in named))
  assert not unnamed, f'add these to the README layout table: {unnamed}'
