"""How close our image path is to the PyTorch releases' PIL path (prints JSON, never asserts).

  python -m benchmarks.image_fidelity

transforms: per config, the mean |ours - release| in 1/255 units over scikit-learn's sample photos
(and crops of other aspect ratios) at 224px, the release transform written with PIL
(references/pil_reference.py), for `before` (the alternative data options in CASES) and `after`
(the config's options now).
jpeg: the fraction of uint8 values that differ from PIL's decoding, and the largest difference,
for TF's default JPEG decoder and for ours (`preprocess.decode_image`), at several qualities.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
from PIL import Image

from benchmarks import common as bench
from references import pil_reference

# config -> (release transform: crop_pct, shorter side; the alternative data options compared)
CASES = {
    'ship_vtab': ((1.0, False), dict(resize='bicubic', crop_pct=0.875)),
    'davpt_vtab': ((1.0, True), dict(resize='bicubic', crop_pct=0.875)),
    'davpt_fgvc': ((0.875, True), dict(resize='bicubic', crop_pct=0.875)),
    'spt_vtab': ((1.0, True), dict(resize='bicubic', crop_pct=1.0)),
}


def _ours(arr: np.ndarray, opts) -> np.ndarray:
  import tensorflow as tf
  from prompt_jax.data import pipeline
  ex = pipeline.prepare_example({'image': tf.constant(arr), 'label': 0}, opts)
  return ex['image'].numpy()


def transforms() -> dict:
  from prompt_jax.data import pipeline
  out = {}
  photos = pil_reference.photos()
  for name, ((crop_pct, shorter), before) in CASES.items():
    cfg = importlib.import_module(f'prompt_jax.configs.{name}').get_config()
    after = pipeline.ImageOptions.from_config(cfg.data)
    old = pipeline.ImageOptions(image_size=224, normalization=after.normalization, **before)
    row = {'release': f'{"Resize(R)" if shorter else "Resize((R, R))"} bicubic, R = '
                      f'{round(224 / crop_pct)}, CenterCrop(224)', 'after_options': str(after)}
    for label, opts in (('before', old), ('after', after)):
      diffs = {}
      for pname, arr in photos.items():
        ref = pil_reference.resize_center_crop(arr, 224, crop_pct, shorter)
        diffs[f'{pname} {arr.shape[0]}x{arr.shape[1]}'] = round(
            255 * float(np.abs(_ours(arr, opts) - ref).mean()), 2)
      row[f'{label}_mean_abs_diff_255'] = diffs
    out[name] = row
  return out


def jpeg() -> dict:
  import tensorflow as tf
  from prompt_jax.data import preprocess
  arr = pil_reference.photos()['china']
  out = {}
  for q in (75, 90, 95):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, 'JPEG', quality=q)
    data = buf.getvalue()
    pil = np.asarray(Image.open(io.BytesIO(data)).convert('RGB')).astype(np.int32)
    row = {}
    for label, dec in (('tf_default', tf.io.decode_image(data, channels=3)),
                       ('ours', preprocess.decode_image(tf.constant(data)))):
      d = np.abs(dec.numpy().astype(np.int32) - pil)
      row[label] = {'fraction_differing': round(float((d > 0).mean()), 4), 'max_abs': int(d.max())}
    out[f'quality_{q}'] = row
  return out


def main() -> None:
  print(json.dumps({'benchmark': 'image_fidelity', 'images': 'sklearn.datasets.load_sample_images',
                    'transforms': transforms(), 'jpeg': jpeg(), 'machine': bench.machine()},
                   indent=1))


if __name__ == '__main__':
  main()
