"""In-step input transform (prompt_jax/data/device_input.py) against TF and the host path."""

import jax
import numpy as np
import tensorflow as tf

from prompt_jax.train import steps
from prompt_jax.data import device_input
from prompt_jax.data import preprocess


def test_crop_and_resize_matches_tensorflow():
  rng = np.random.default_rng(0)
  images = rng.random((6, 24, 20, 3)).astype(np.float32)
  boxes, _ = device_input.random_boxes(jax.random.PRNGKey(3), 6)
  boxes = np.asarray(boxes)
  want = tf.image.crop_and_resize(images, boxes, np.arange(6, dtype=np.int32), (16, 16)).numpy()
  got = jax.vmap(lambda x, b: device_input.crop_and_resize(x, b, 16))(images, boxes)
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_prepare_normalises_uint8_and_float_as_the_host_path():
  rng = np.random.default_rng(1)
  u8 = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  f01 = u8.astype(np.float32) / 255.0
  for mode in preprocess.MEAN_STD:
    want = preprocess.normalize(f01, mode).astype(np.float32)
    np.testing.assert_allclose(device_input.prepare(u8, mode), want, atol=1e-6)
    np.testing.assert_array_equal(device_input.prepare(f01, mode), want)


def test_augmentation_is_a_function_of_seed_and_step():
  x = np.random.default_rng(2).random((8, 16, 16, 3)).astype(np.float32)

  def aug(seed, step):
    return np.asarray(device_input.random_resized_crop_flip(x, steps.augment_key(seed, step)))

  np.testing.assert_array_equal(aug(0, 5), aug(0, 5))
  assert not np.array_equal(aug(0, 5), aug(0, 6))
  assert not np.array_equal(aug(0, 5), aug(1, 5))
  _, flip = device_input.random_boxes(steps.augment_key(0, 0), 4096)
  assert 0.45 < float(np.mean(flip)) < 0.55


def test_the_full_box_is_the_identity_and_flip_mirrors_it():
  x = np.random.default_rng(3).random((16, 16, 3)).astype(np.float32)
  box = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
  np.testing.assert_allclose(device_input.crop_and_resize(x, box, 16), x, atol=1e-6)
  np.testing.assert_allclose(device_input.crop_and_resize(x, box, 16, True), x[:, ::-1], atol=1e-6)
  box = np.array([0.1, 0.2, 0.7, 0.9], np.float32)
  np.testing.assert_array_equal(device_input.crop_and_resize(x, box, 12, True),
                                np.asarray(device_input.crop_and_resize(x, box, 12))[:, ::-1])
