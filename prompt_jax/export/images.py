"""Image files in: found under folders, decoded as the trainer decodes them
(`preprocess.read_image`), those that do not decode named and skipped.
Shared by single- and many-task prediction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from prompt_jax.data import preprocess
from prompt_jax.util import console

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')


def image_files(paths: Sequence[str]) -> list[str]:
  """Image files under `paths` (folders searched recursively), sorted."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      for root, _, files in os.walk(p):
        out += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    elif os.path.isfile(p):
      out.append(p)
    else:
      raise FileNotFoundError(f'{p}: no such image file or folder')
  if not out:
    raise FileNotFoundError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) under {list(paths)}')
  return sorted(os.path.abspath(f) for f in out)


def read_images(files: Sequence[str]) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
  """Decodes `files` as the trainer does (`preprocess.read_image`): (images, their files, {file:
  why} of those that do not decode, skipped)."""
  images, good, bad = [], [], {}
  for f in files:
    try:
      with console.stderr_fd_silenced():  # libjpeg's own warnings; the file is named instead
        images.append(preprocess.read_image(f))
      good.append(f)
    except preprocess.ImageError as e:
      bad[f] = str(e)
  return images, good, bad
