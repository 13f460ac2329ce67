"""prompt_jax.evaluators: the registry, 'top1' and 'classification' on known answers (padding rows
masked out), and an evaluator registered from outside the package."""

import numpy as np
import pytest

from prompt_jax import evaluators


def _batches():
  # 5 real rows + 1 padding row whose "prediction" would be right: it must not count.
  labels = np.array([0, 1, 2, 1, 0, 2], np.int32)
  mask = np.array([True, True, True, True, True, False])
  images = np.eye(3, dtype=np.float32)[[0, 1, 0, 1, 1, 2]]  # predict = identity: argmax = row
  for i in (0, 3):
    yield {'image': images[i:i + 3], 'label': labels[i:i + 3], 'mask': mask[i:i + 3]}


def test_top1_counts_unmasked_rows_only():
  res = evaluators.get('top1')(lambda x: x, _batches(), total=2)
  assert res == {'accuracy': 3 / 5, 'n': 5}


def test_classification_merges_the_steps_metrics():
  from clu import metrics
  import flax

  @flax.struct.dataclass
  class M(metrics.Collection):
    accuracy: metrics.Accuracy
    loss: metrics.Average.from_output('loss')

  def step(batch):
    logits = batch['image']
    return M.single_from_model_output(logits=logits, labels=batch['label'], mask=batch['mask'],
                                      loss=np.ones(len(logits), np.float32))

  res = evaluators.get('classification')(step, _batches(), total=2)
  assert res['accuracy'] == pytest.approx(3 / 5) and res['loss'] == pytest.approx(1.0)


def test_an_empty_split_is_an_error():
  for name in ('top1', 'classification'):
    with pytest.raises(ValueError, match='the split is empty'):
      evaluators.get(name)(lambda x: x, iter(()), desc='eval test')


def test_an_outside_evaluator_registers_and_is_found():
  @evaluators.register('count_rows')
  def count_rows(predict, batches, *, total=None, desc=''):
    return {'n': sum(int(b['mask'].sum()) for b in evaluators.iterate(batches, total=total,
                                                                       desc=desc))}
  try:
    assert evaluators.get('count_rows')(None, _batches()) == {'n': 5}
    assert {'top1', 'classification', 'count_rows'} <= set(evaluators.EVALUATORS.names())
  finally:
    evaluators.EVALUATORS.unregister('count_rows')
  with pytest.raises(KeyError, match="unknown evaluator 'count_rows'"):
    evaluators.get('count_rows')


def test_on_split_pads_the_last_batch_and_counts_each_example_once():
  from prompt_jax.data.source import ArraySource
  x = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]
  y = np.array([0, 1, 2, 1, 1], np.int32)  # 4 of 5 right; batches of 2 pad the last one
  res = evaluators.on_split('top1', lambda images: images,
                            ArraySource({'test': (x, y)}, num_classes=3), 'test', 2)
  assert res == {'accuracy': 4 / 5, 'n': 5}
