"""DA-VPT on an FGVC task (CUB, NABirds, Flowers, Dogs, Cars): the VTAB recipe with FGVC data
(random-resized-crop + flip augmentation; many classes, so P = 10 clusters are always formed).

  python -m prompt_jax.main --config=configs/davpt_fgvc.py:task=cub,backbone=mocov3 \
      --workdir=/tmp/davpt_cub --config.data.data_dir=/data/CUB_200_2011 \
      --config.init.checkpoint=...

`backbone` as in configs/davpt_vtab.py. Data: VPT-style train/val/test.json under data_dir
(prompt_jax/data/folder.py, layout 'fgvc').
"""

from prompt_jax.configs import common
from prompt_jax.configs import davpt_vtab


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cub', backbone='mae')
  c = davpt_vtab.davpt_config(a.task, a.backbone)
  c.data.update(source='folder', layout='fgvc', train_split='train', eval_splits=('val', 'test'),
                val_split='val', augment=True)
  return common.finalize(c)
