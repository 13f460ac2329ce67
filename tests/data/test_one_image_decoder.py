"""Training and prediction decode an image file through one function: the same uint8 array for
16-bit PNGs, grayscale, RGBA, palette, CMYK JPEGs and EXIF-rotated JPEGs."""

import numpy as np
import pytest
from PIL import Image

from prompt_jax.export import predict
from prompt_jax.data import folder
from prompt_jax.data import preprocess

RGB = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
DEEP = np.random.default_rng(1).integers(0, 65536, (20, 30), dtype=np.uint16)


def _exif_rotated(path):
  exif = Image.fromarray(RGB).getexif()
  exif[0x0112] = 6  # orientation: rotate 90 on display
  Image.fromarray(RGB).save(path, exif=exif)


MAKERS = {
    'png16.png': lambda p: Image.fromarray(DEEP).save(p),
    'gray.png': lambda p: Image.fromarray(RGB[..., 0]).save(p),
    'rgba.png': lambda p: Image.fromarray(np.dstack([RGB, RGB[..., :1]])).save(p),
    'palette.png': lambda p: Image.fromarray(RGB).convert('P').save(p),
    'cmyk.jpg': lambda p: Image.fromarray(RGB).convert('CMYK').save(p),
    'exif.jpg': _exif_rotated,
}


@pytest.mark.parametrize('name', sorted(MAKERS))
def test_trainer_and_predict_decode_the_same_array(tmp_path, name):
  import tensorflow as tf
  path = str(tmp_path / name)
  MAKERS[name](path)
  trainer = folder.decode_file(tf.constant(path)).numpy()
  images, files, bad = predict.read_images([path])
  assert not bad and files == [path]
  assert images[0].dtype == np.uint8 and images[0].shape == (20, 30, 3)
  np.testing.assert_array_equal(images[0], trainer)


def test_a_16_bit_png_keeps_its_high_byte(tmp_path):
  path = str(tmp_path / 'deep.png')
  Image.fromarray(DEEP).save(path)
  got = preprocess.read_image(path)
  np.testing.assert_array_equal(got[..., 0], (DEEP >> 8).astype(np.uint8))


def test_a_file_that_does_not_decode_is_named(tmp_path):
  path = tmp_path / 'fake.jpg'
  path.write_bytes(b'not a jpeg at all')
  images, files, bad = predict.read_images([str(path)])
  assert not images and list(bad) == [str(path)]
  assert bad[str(path)].startswith(f'{path}: not a decodable image (')
  assert '\n' not in bad[str(path)]
