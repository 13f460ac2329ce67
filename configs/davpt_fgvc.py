"""DA-VPT on an FGVC task (CUB, NABirds, Flowers, Dogs, Cars): the VTAB recipe with FGVC data
(random-resized-crop + flip augmentation; many classes, so P = 10 clusters are always formed).

  python -m prompt_jax.main --config=configs/davpt_fgvc.py:mocov3 --workdir=/tmp/davpt_cub \
      --config.data.task=cub --config.data.data_dir=/data/CUB_200_2011 \
      --config.init.checkpoint=...

arg as in configs/davpt_vtab.py.
"""

from configs import common
from configs import davpt_vtab


def get_config(arg: str = 'mae'):
  c = davpt_vtab.davpt_config(arg)
  # VPT-style train/val/test.json under data_dir (prompt_jax/data/folder.py)
  c.data.update(source='folder', layout='fgvc', task='cub', train_split='train',
                eval_splits=('val', 'test'), val_split='val', augment=True)
  return common.finalize(c)
