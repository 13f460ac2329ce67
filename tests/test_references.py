"""Every document the code cites is in the repository: 'docs/...' paths in prompt_jax/ and configs/
exist, and no bare 'spec NN' citation (a document outside the repository) is left."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cited_documents_exist():
  files = glob.glob(os.path.join(ROOT, 'prompt_jax', '**', '*.py'), recursive=True)
  files += glob.glob(os.path.join(ROOT, 'configs', '*.py'))
  missing, bare = [], []
  for path in files:
    with open(path) as f:
      text = f.read()
    rel = os.path.relpath(path, ROOT)
    missing += [f'{rel}: {d}' for d in re.findall(r'\bdocs/[\w./-]+\.md', text)
                if not os.path.exists(os.path.join(ROOT, d))]
    bare += [f'{rel}: {m}' for m in re.findall(r'\b[Ss]pec \d\d\b', text)]
  assert not missing, missing
  assert not bare, bare
