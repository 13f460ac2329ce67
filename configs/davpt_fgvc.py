"""DA-VPT on an FGVC task (CUB, NABirds, Flowers, Dogs, Cars): the VTAB recipe with FGVC data
(random-resized-crop + flip augmentation; many classes, so P = 10 clusters are always formed).

  python -m prompt_jax.main --config=configs/davpt_fgvc.py:task=cub,backbone=mocov3 \
      --workdir=/tmp/davpt_cub --config.data.data_dir=/data/CUB_200_2011 \
      --config.init.checkpoint=...

`backbone` as in configs/davpt_vtab.py. Data: VPT-style train/val/test.json under data_dir
(prompt_jax/data/folder.py, layout 'fgvc'). Images: the release's FGVC transform, shorter side to
256 then centre crop 224 (crop_pct 0.875). Prompt norm before each block: 'l2' where the
release's FGVC config sets vpt_norm l2, else 'none'. Per task and backbone: the release's
configs/fgvc/<backbone>_<task>.yaml as executed (FGVC below, columns and flags as
configs/davpt_vtab.py's VTAB; all 15 files).
"""

from prompt_jax.configs import common
from prompt_jax.configs import davpt_vtab


FGVC = """
# back task                 lr     wd     wd_head drop nP P  layers λpatch λcls  r   ep  norm flags
mae    cub                  .005   .01    .5      0    15 20 9-11   .05    .05   5   1   l2   m
mae    nabirds              .005   .01    .5      0    10 20 8-11   .05    .05   5   1   none m
mae    oxford_flowers       .005   .0001  .5      0    5  40 5-11   .01    .1    5   1   none m
mae    stanford_cars        .005   .05    .1      0    15 15 4-11   .01    .5    5   1   none m
mae    stanford_dogs        .001   .0001  .05     0    20 10 11-11  .01    .03   0   10  l2   c8
mocov3 cub                  .005   1      .1      .1   40 20 11-11  .1     .02   1   1   l2   c8nk
mocov3 nabirds              .01    .01    .05     0    20 20 11-11  .01    .05   5   10  none c8nk
mocov3 oxford_flowers       .01    1      .05     0    5  10 3-11   .05    .05   10  10  none c8nkm
mocov3 stanford_cars        .005   .5     .0001   0    10 20 10-11  .05    .05   5   10  none 8nk
mocov3 stanford_dogs        .005   .0001  .05     0    5  10 11-11  .01    .03   5   10  none c8nk
sup21k cub                  .0005  .05    5       .1   10 10 10-11  .05    .05   5   1   l2   c8nkm
sup21k nabirds              .001   .05    3       0    5  10 9-11   .01    .2    60  10  none c8nk
sup21k oxford_flowers       .001   .05    3       0    40 10 11-11  0      0     1   10  none c8nk
sup21k stanford_cars        .001   .05    3       0    80 60 11-11  .05    .05   60  10  none c8nk
sup21k stanford_dogs        .0002  .05    3       0    20 10 11-11  0      0     1   10  none c8nk
"""


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cub', backbone='mae')
  c = davpt_vtab.davpt_config(a.task, a.backbone)
  c.data.update(source='folder', layout='fgvc', train_split='train', eval_splits=('val', 'test'),
                val_split='val', augment=True, crop_pct=0.875)
  recipes = davpt_vtab.parse_recipes(FGVC)[a.backbone]
  if a.task not in recipes:
    raise ValueError(f'no DA-VPT FGVC recipe for task {a.task!r}; known: {sorted(recipes)}')
  for dotted, value in recipes[a.task].items():
    common.set_field(c, dotted, value)
  return common.finalize(c)
