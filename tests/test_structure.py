"""The house rules, checked from the code itself.

Layers (low to high; imports only point down, prompt_jax/__init__.py states them):
util < models, text < checkpoints, data, evaluators < methods < train < export < protocol < entry
points (main.py, api.py). No import circle (function-local imports counted), no library import of
configs/, no top-level module but the entry points, a function-local import of a prompt_jax module
only where that module imports a heavy optional dependency (TensorFlow, PyTorch, matplotlib,
scikit-learn). Also: no code outside prompt_jax/methods/ and configs/ names a registered method, no
function over 80 lines and no module over 460.
"""

import ast
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'prompt_jax'
LAYERS = {'util': 0, 'models': 1, 'text': 1, 'checkpoints': 2, 'data': 2, 'evaluators': 2,
          'methods': 3, 'train': 4, 'export': 5, 'protocol': 6}
ENTRY_POINTS = {'prompt_jax', 'prompt_jax.main', 'prompt_jax.api'}
ENTRY_RANK = 7
# clu's metric writers import TensorFlow.
HEAVY = ('tensorflow', 'tensorflow_datasets', 'torch', 'matplotlib', 'sklearn', 'clu')
# Strings equal to a method name that mean something else: VPT's published protocol (its lr x wd
# grid and its release seeds, `--search=vpt`, `--seeds=vpt`, usable with any method), the
# 'linear' position-embedding interpolation, and the config schema's default method.
NOT_A_METHOD = {('prompt_jax/protocol/searches.py', 'vpt'),
                ('prompt_jax/checkpoints/posemb.py', 'linear'),
                ('prompt_jax/checkpoints/vit.py', 'linear'),
                ('prompt_jax/checkpoints/clip.py', 'linear'),
                ('prompt_jax/train/validation.py', 'linear'),
                ('prompt_jax/util/config.py', 'vpt'), ('prompt_jax/util/config.py', 'linear')}


def _package_files(root=ROOT):
  for path in sorted(glob.glob(os.path.join(root, PACKAGE, '**', '*.py'), recursive=True)):
    yield os.path.relpath(path, root).replace(os.sep, '/'), path


def _module(rel):
  name = rel[:-3].replace('/', '.')
  return name[:-len('.__init__')] if name.endswith('.__init__') else name


class Graph:
  """The package's imports: module -> {module: function-local?}, external module-level imports."""

  def __init__(self, root=ROOT):
    self.files = {_module(rel): path for rel, path in _package_files(root)}
    self.edges = {m: {} for m in self.files}
    self.external = {m: set() for m in self.files}
    self.configs = []
    for m, path in self.files.items():
      with open(path) as f:
        tree = ast.parse(f.read())
      local = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef,
                                                                  ast.AsyncFunctionDef))
               for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
      for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
          for target in self._targets(m, node):
            self._add(m, target, id(node) in local, node.lineno)

  def _targets(self, m, node):
    if isinstance(node, ast.Import):
      return [a.name for a in node.names]
    base = node.module or ''
    if node.level:
      parts = m.split('.')
      keep = len(parts) - node.level + (1 if self.files[m].endswith('__init__.py') else 0)
      base = '.'.join(parts[:keep] + ([base] if base else []))
    return [f'{base}.{a.name}' if f'{base}.{a.name}' in self.files else base for a in node.names]

  def _add(self, m, target, local, line):
    if target == 'prompt_jax.configs' or target.startswith('prompt_jax.configs.'):
      self.configs.append(f'{m}:{line} imports {target}')
      return
    while target not in self.files and '.' in target:
      target = target.rsplit('.', 1)[0]
    if target in self.files:
      if target != m:
        self.edges[m][target] = self.edges[m].get(target, True) and local
    elif not local:
      self.external[m].add(target.split('.')[0])

  def circles(self):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v):
      index[v] = low[v] = len(index)
      stack.append(v)
      on.add(v)
      for w in self.edges[v]:
        if w not in index:
          visit(w)
          low[v] = min(low[v], low[w])
        elif w in on:
          low[v] = min(low[v], index[w])
      if low[v] == index[v]:
        comp = []
        while True:
          w = stack.pop()
          on.discard(w)
          comp.append(w)
          if w == v:
            break
        if len(comp) > 1:
          out.append(sorted(comp))

    for v in sorted(self.files):
      if v not in index:
        visit(v)
    return out

  def imports_heavy(self, m, seen=None):
    """Whether importing `m` imports a HEAVY package (module-level imports, transitively)."""
    seen = set() if seen is None else seen
    if m in seen:
      return False
    seen.add(m)
    return (bool(self.external[m] & set(HEAVY))
            or any(self.imports_heavy(t, seen) for t, local in self.edges[m].items() if not local))


def rank(module):
  if module in ENTRY_POINTS:
    return ENTRY_RANK
  return LAYERS.get(module.split('.')[1], ENTRY_RANK)


def check_layers(graph):
  """Every violation of the layering, one line each."""
  out = [f'import circle: {" <-> ".join(c)}' for c in graph.circles()]
  for m, targets in sorted(graph.edges.items()):
    for t, local in sorted(targets.items()):
      if rank(t) > rank(m):
        out.append(f'upward import: {m} (layer {rank(m)}) -> {t} (layer {rank(t)})')
      if local and not graph.imports_heavy(t):
        out.append(f'function-local import of a light module: {m} -> {t} (import it at the top)')
  out += [f'library imports configs/: {c}' for c in graph.configs]
  for m in sorted(graph.files):
    parts = m.split('.')
    if len(parts) == 2 and m not in ENTRY_POINTS and parts[1] not in LAYERS:
      out.append(f'top-level module {m}: put it in a layer folder ({sorted(LAYERS)})')
  return out


def test_layers_hold():
  problems = check_layers(Graph())
  assert not problems, '\n'.join(problems)


def test_layer_check_catches_each_kind_of_break(tmp_path):
  """A copy of the package with one break of each rule planted: each is reported."""
  import shutil
  shutil.copytree(os.path.join(ROOT, PACKAGE), tmp_path / PACKAGE)
  pkg = tmp_path / PACKAGE
  with open(pkg / 'util' / 'tree.py', 'a') as f:  # upward, and a circle through train
    f.write('\nfrom prompt_jax.train import optim  # noqa\n')
  with open(pkg / 'methods' / 'vpt.py', 'a') as f:
    f.write('\ndef _x():\n  from prompt_jax.util import cpu_malloc  # noqa\n')
  with open(pkg / 'data' / 'tasks.py', 'a') as f:
    f.write('\nfrom prompt_jax.configs import common  # noqa\n')
  (pkg / 'helpers.py').write_text('"""A top-level module."""\n')
  text = '\n'.join(check_layers(Graph(str(tmp_path))))
  assert 'upward import: prompt_jax.util.tree (layer 0) -> prompt_jax.train.optim' in text
  assert 'import circle:' in text and 'prompt_jax.util.tree' in text
  assert 'function-local import of a light module: prompt_jax.methods.vpt' in text
  assert 'library imports configs/: prompt_jax.data.tasks' in text
  assert 'top-level module prompt_jax.helpers' in text


def _docstrings(tree):
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        out.add(id(body[0].value))
  return out


def test_no_code_outside_methods_and_configs_names_a_method():
  from prompt_jax.methods import base
  names = set(base.METHODS.names()) - {'toy'}
  found = []
  for rel, path in _package_files():
    if rel.startswith('prompt_jax/methods/'):
      continue
    with open(path) as f:
      tree = ast.parse(f.read())
    docs = _docstrings(tree)
    for node in ast.walk(tree):
      if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
          and node.value in names and (rel, node.value) not in NOT_A_METHOD):
        found.append(f'{rel}:{node.lineno}: {node.value!r}')
  assert not found, found


def test_functions_and_modules_are_small():
  long = []
  for rel, path in _package_files():
    with open(path) as f:
      text = f.read()
    if text.count('\n') > 460:
      long.append(f'{rel}: {text.count(chr(10))} lines')
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > 80:
          long.append(f'{rel}:{node.lineno} {node.name}: {n} lines')
  assert not long, long


def test_tests_import_helpers_not_conftest_and_benchmarks_not_tests():
  """Test helpers are a module (tests/helpers.py) or fixtures; the PyTorch references live in
  references/, which tests and benchmarks both import."""
  found = []
  for folder, banned in (('tests', ('conftest', 'tests.conftest')), ('benchmarks', ('tests',))):
    for path in sorted(glob.glob(os.path.join(ROOT, folder, '**', '*.py'), recursive=True)):
      with open(path) as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
        found += [f'{os.path.relpath(path, ROOT)}:{node.lineno} imports {n}' for n in names
                  if any(n == b or n.startswith(b + '.') for b in banned)]
  assert not found, found


def _decoder_calls(root=ROOT):
  """(file:line, name) of every call of a `model.variant` decoder in the package."""
  out = []
  for rel, path in _package_files(root):
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, 'id', '')
        owner = ast.unparse(f.value).rsplit('.', 1)[-1] if isinstance(f, ast.Attribute) else ''
        if name in ('decode_variant', 'clip_kwargs') or (name == 'decode' and 'arch' in owner):
          out.append((rel, node.lineno, name))
  return out


def test_the_model_variant_is_decoded_in_one_place():
  """The families' tables are read by models/arch.py alone, and arch.decode is called by
  `Method.arch` alone: builders get the run's Arch, never the variant string."""
  allowed = {('prompt_jax/models/arch.py', 'decode_variant'), ('prompt_jax/models/arch.py',
                                                               'clip_kwargs'),
             ('prompt_jax/methods/base.py', 'decode')}
  calls = _decoder_calls()
  assert {(rel, name) for rel, _, name in calls} == allowed, calls
  assert len(calls) == 3, calls


# Top-level test files: the entry points, the repository around the package, and checks across
# every layer.
CROSS_CUTTING = {'test_api.py', 'test_main.py', 'test_benchmarks.py', 'test_docs.py',
                 'test_faults.py', 'test_matrix.py', 'test_notebooks.py', 'test_references.py',
                 'test_session_cache.py', 'test_structure.py', 'test_trajectory.py',
                 'test_wheel.py'}
# Test folders beside the package's: configs/ (the config files) and outside/ (a method defined
# outside the package).
OTHER_FOLDERS = {'configs', 'outside'}


def _test_layout_problems(root=ROOT) -> list[str]:
  tests = os.path.join(root, 'tests')
  folders = {f for f in os.listdir(tests) if os.path.isdir(os.path.join(tests, f))
             and not f.startswith(('_', '.'))}
  top = {f for f in os.listdir(tests) if f.startswith('test_') and f.endswith('.py')}
  return ([f'tests/{f}/ mirrors no folder of {PACKAGE}/' for f in sorted(folders)
           if f not in LAYERS and f not in OTHER_FOLDERS]
          + [f'tests/{f} belongs in the folder of the layer it tests' for f in sorted(top)
             if f not in CROSS_CUTTING])


def test_tests_mirror_the_package_layout(tmp_path):
  """A test file sits in tests/<layer>/ for the layer it tests; only the checks across layers
  stay at the top."""
  assert not _test_layout_problems(), _test_layout_problems()
  (tmp_path / 'tests' / 'widgets').mkdir(parents=True)
  (tmp_path / 'tests' / 'test_optim.py').write_text('')
  assert len(_test_layout_problems(str(tmp_path))) == 2
