"""Defaults of config.data are declared once (configs/common.py): a source built from a partial
section reads them from there, never from a default of its own."""

import ml_collections

from prompt_jax.configs import common
from prompt_jax.data import fewshot


def test_a_partial_section_reads_the_declared_defaults(monkeypatch):
  got = {}
  monkeypatch.setattr(fewshot, 'tfds_items', lambda task, data_dir: ({}, ['a']))
  monkeypatch.setattr(fewshot, 'build_source', lambda items, names, **kw: got.update(kw))
  partial = ml_collections.ConfigDict(dict(task='dtd', data_dir=None, image_size=32,
                                           normalization='clip'))
  fewshot._factory(partial)
  d = common.base().data
  assert got['augment'] is d.augment is False  # fewshot once defaulted to True on its own
  assert (got['shots'], got['seed'], got['subset']) == (d.shots, d.fewshot_seed, d.subset)
  assert common.field(partial, 'data.image_size') == 32
