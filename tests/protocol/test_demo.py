"""The README's demo numbers are generated from docs/demo_results.json (summaries the demo writes
as demo_summary.json): README and demo stay in step."""

import json
import os

from prompt_jax.protocol import demo
from prompt_jax.configs import common

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_readme_demo_table_is_generated_from_the_committed_results():
  with open(os.path.join(ROOT, 'docs', 'demo_results.json')) as f:
    summaries = json.load(f)
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  assert readme.count(demo.README_BEGIN) == 1, 'the README lost its generated demo block'
  got = readme[readme.index(demo.README_BEGIN):readme.index(demo.README_END) + len(
      demo.README_END)]
  assert got == demo.readme_block(summaries), (
      'README demo block differs from docs/demo_results.json; regenerate it with '
      'prompt_jax.protocol.demo.readme_block')
  assert set(summaries[0]['runs']) == set(common.RUN_TABLE)
