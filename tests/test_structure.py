"""The house rules of issue 21, checked: no code outside prompt_jax/methods/ and configs/ names a
registered method (string constants, not docstrings or comments), no function in prompt_jax/ is
over 80 lines and no module over 460."""

import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Strings equal to a method name that mean something else: VPT's published protocol (its lr x wd
# grid and its release seeds, `--search=vpt`, `--seeds=vpt`, usable with any method) and the
# 'linear' position-embedding interpolation.
NOT_A_METHOD = {('prompt_jax/protocol.py', 'vpt'), ('prompt_jax/checkpoints/posemb.py', 'linear'),
                ('prompt_jax/checkpoints/vit.py', 'linear'),
                ('prompt_jax/checkpoints/clip.py', 'linear'),
                ('prompt_jax/validation.py', 'linear')}


def _package_files():
  for path in sorted(glob.glob(os.path.join(ROOT, 'prompt_jax', '**', '*.py'), recursive=True)):
    yield os.path.relpath(path, ROOT).replace(os.sep, '/'), path


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
