"""DA-VPT on an FGVC task (CUB, NABirds, Flowers, Dogs, Cars): the VTAB recipe with FGVC data
(random-resized-crop + flip augmentation; many classes, so P = 10 clusters are always formed).

  python -m prompt_jax.main --config=configs/davpt_fgvc.py:task=cub,backbone=mocov3 \
      --workdir=/tmp/davpt_cub --config.data.data_dir=/data/CUB_200_2011 \
      --config.init.checkpoint=...

`backbone` as in configs/davpt_vtab.py. Data: VPT-style train/val/test.json under data_dir
(prompt_jax/data/folder.py, layout 'fgvc'). Images: the release's FGVC transform, shorter side to
256 then centre crop 224 (crop_pct 0.875). Prompt norm before each block: 'l2' where the
release's FGVC config sets vpt_norm l2 (L2_NORM), else 'none'.
"""

from prompt_jax.configs import common
from prompt_jax.configs import davpt_vtab


# (task, backbone) whose release config (configs/fgvc/*.yaml) sets vpt_norm: l2.
L2_NORM = {('cub', 'mae'), ('stanford_dogs', 'mae'), ('cub', 'sup21k'), ('cub', 'mocov3')}


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cub', backbone='mae')
  c = davpt_vtab.davpt_config(a.task, a.backbone)
  c.data.update(source='folder', layout='fgvc', train_split='train', eval_splits=('val', 'test'),
                val_split='val', augment=True, crop_pct=0.875)
  c.davpt.prompt_norm = 'l2' if (a.task, a.backbone) in L2_NORM else 'none'
  return common.finalize(c)
