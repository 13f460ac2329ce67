"""The image path against the PyTorch releases' PIL / torchvision transforms, and JPEG decoding."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from prompt_jax.data import pipeline
from prompt_jax.data import preprocess
from prompt_jax.data import vtab
from references import pil_reference


def _ours(arr, cfg_data):
  opts = pipeline.ImageOptions.from_config(cfg_data)
  ex = pipeline.prepare_example({'image': tf.constant(arr), 'label': 0}, opts)
  return ex['image'].numpy()


@pytest.mark.parametrize('config,shorter_side,crop_pct', [
    ('davpt_vtab', True, 1.0),   # DA-VPT VTAB: T.Resize(224, 3) + T.CenterCrop(224)
    ('spt_vtab', True, 1.0),     # SPT VTAB: the same
    ('davpt_fgvc', True, 0.875),  # DA-VPT FGVC eval: T.Resize(256, 3) + T.CenterCrop(224)
    ('ship_vtab', False, 1.0),   # SHIP direct_resize: T.Resize((224, 224), 3), no crop
])
def test_release_transforms_within_one_grey_level(config, shorter_side, crop_pct):
  import importlib
  cfg = importlib.import_module(f'prompt_jax.configs.{config}').get_config()
  for name, arr in pil_reference.photos().items():
    got = _ours(arr, cfg.data)
    want = pil_reference.resize_center_crop(arr, 224, crop_pct, shorter_side)
    assert got.shape == want.shape == (224, 224, 3)
    # PIL rounds to uint8 (mean 0.25/255 by itself); the old square 256 -> 224 path was 30-45/255.
    assert np.abs(got - want).mean() < 0.5 / 255, (name, 255 * np.abs(got - want).mean())


def test_shorter_side_geometry_known_answer():
  # 10×20 (H×W) image, S = 4: shorter side 10 -> 4, longer 20 -> int(4·20/10) = 8; crop the
  # middle 4 of the 8 columns (offset round(4/2) = 2); pixel values hold the source column.
  img = np.broadcast_to(np.arange(20, dtype=np.float32)[None, :, None] * 10, (10, 20, 3))
  out = preprocess.resize_crop(tf.constant(img), 4, 'bilinear', resize_to='shorter_side').numpy()
  cols = out[0, :, 0] * 255 / 10  # back to source column coordinates
  np.testing.assert_allclose(cols, [(j + 0.5) * 2.5 - 0.5 for j in range(2, 6)], atol=1e-4)
  with pytest.raises(ValueError, match='resize_to'):
    preprocess.resize_crop(tf.constant(img), 4, resize_to='longer')


def _jpeg(quality=75) -> tuple[bytes, np.ndarray]:
  """A quality-75 JPEG of a photo crop and PIL's decoding of it."""
  arr = pil_reference.photos()['china'][100:260, 200:420]
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, 'JPEG', quality=quality)
  data = buf.getvalue()
  return data, np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


def test_jpeg_decoded_like_pil():
  data, pil = _jpeg()
  default = tf.io.decode_image(data, channels=3).numpy()
  assert (default != pil).mean() > 0.3   # TF's default fast IDCT: most values differ
  np.testing.assert_array_equal(preprocess.decode_image(tf.constant(data)).numpy(), pil)
  png = io.BytesIO()
  Image.fromarray(pil).save(png, 'PNG')
  np.testing.assert_array_equal(preprocess.decode_image(tf.constant(png.getvalue())).numpy(), pil)


def test_tfds_read_decodes_jpeg_like_pil():
  data, pil = _jpeg()
  features = tfds.features.FeaturesDict({'image': tfds.features.Image(encoding_format='jpeg'),
                                         'label': tfds.features.ClassLabel(num_classes=3)})

  class Builder:  # what vtab.as_dataset asks of a TFDS builder
    def as_dataset(self, split, shuffle_files, decoders=None):
      ex = {'image': tf.constant(data), 'label': tf.constant(1, tf.int64)}
      return tf.data.Dataset.from_tensors(ex).map(
          lambda e: features.decode_example(e, decoders=decoders))

  got = next(iter(vtab.as_dataset(Builder(), 'test')))['image'].numpy()
  np.testing.assert_array_equal(got, pil)
