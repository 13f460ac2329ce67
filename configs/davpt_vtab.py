"""DA-VPT on one VTAB-1k task, docs/specs/03-davpt.md recipe (MAE / MoCo v3 / supervised ViT-B/16).

  python -m prompt_jax.main --config=configs/davpt_vtab.py:task=dtd,backbone=mae \
      --workdir=/tmp/davpt --config.init.checkpoint=/path/mae_pretrain_vit_base.pth

`backbone` in sup21k | mae | mocov3 (BACKBONES: checkpoint format and pooling). Extra trainable
params and the prompt mask are config fields: --config.davpt.train_k_bias=True, train_norm1,
train_cls, mask_prompts (prompt queries see image tokens only).
AdamW, 100 epochs, 10 warm-up epochs from 1e-8, cosine per update not shifted by the warm-up (min
1e-9), batch 32 from a class-balanced sampler (2 images/class, classes repeated within a batch when
the split has fewer than 16; len // 32 full batches per epoch, as the release's ClassSampler), grad
value clip 10, wd on prompts+cls, wd_head on the head kernel, none on 1-D params; head timm
`trunc_normal_(std=.02)` (`model.head_init='normal'`), zero bias. ImageNet
normalisation; the release's VTAB transform: shorter side to 224 (bicubic, aspect kept,
PIL-like antialiasing), centre crop 224; no augmentation. Prompts enter the blocks un-normed
(the release's VTAB configs: vpt_norm none).
Per task and backbone: the release's configs/vtab/<backbone>_<task>.yaml as executed (VTAB below:
lr, wd, wd_head, drop path, nP, P, proxy layers, λ_patch, λ_cls, r, remap epoch, prompt norm and
the four flags train_cls / init_div8 / train_norm1 / train_k_bias;
tests/configs/test_davpt_recipes.py checks it against a transcription of the 46 yamls). The
release's params.py reads only the keys it declares, so a yaml key it does not know
(`vpt_and_cls_loss_weight`, `prompt_depth`, ...) is dropped and a key a yaml leaves out takes
params.py's default (λ 0, r 1, drop path 0, ...): the table holds those executed values.
vtab/mae_retinopathy.yaml sets model_name moco-B; its row is under mae as the file is named. Tasks
without a release yaml (svhn, sun397, kitti; pets for mae, diabetic_retinopathy for mocov3) keep
the defaults below with the backbone's most common flags (FALLBACK_FLAGS). Any field can still be
overridden (--config.train.lr=...).
"""

from prompt_jax.configs import common

# Flags: c = train_cls, 8 = init_div8 (init_divide_by8), n = train_norm1 (norm_norm1),
# k = train_k_bias (bias_k), m = mask_prompts (mask); layers = proxy_start-proxy_end (inclusive);
# ep = dynamic_kmeans (remap from this epoch).
VTAB = """
# back task                 lr     wd     wd_head drop nP P  layers λpatch λcls  r   ep  norm flags
mae    caltech101           .005   .05    .5      .1   5  10 11-11  .01    .01   5   10  none c8
mae    cifar100             .001   5      .5      .1   0  10 5-11   .01    .1    5   1   none c8n
mae    clevr_count          .001   .5     .001    .1   5  10 11-11  .01    .01   5   10  none c8
mae    clevr_dist           .001   10     .5      .1   5  10 11-11  .01    .01   5   10  none c8
mae    diabetic_retinopathy .005   .001   .01     .1   0  10 11-11  .01    .03   5   1   none c8n
mae    dmlab                .001   .5     .0001   .1   5  10 11-11  .01    .01   5   10  none c8
mae    dsprites_loc         .001   10     10      .1   5  10 11-11  .01    .01   5   10  none c8
mae    dsprites_ori         .001   1      0       .1   5  10 11-11  .01    .01   5   10  none c8
mae    dtd                  .001   .5     .5      .1   5  10 11-11  .01    .01   5   10  none c8
mae    eurosat              .0005  5      .5      .1   5  10 11-11  .01    .01   5   10  none c8
mae    oxford_flowers102    .005   .5     .5      .1   5  10 11-11  .01    .01   5   10  none c8
mae    patch_camelyon       .0001  .5     .5      .1   5  10 11-11  .01    .01   5   10  none c8
mae    resisc45             .005   .05    .005    .1   5  10 11-11  .01    .01   5   10  none c8
mae    smallnorb_azi        .001   1      .0005   .1   5  10 11-11  .01    .01   5   10  none c8
mae    smallnorb_ele        .0001  5      .1      .1   10 10 11-11  .05    .5    5   1   none c8n
mocov3 caltech101           .01    .0005  .1      .1   0  5  11-11  .01    .01   5   1   none c8n
mocov3 cifar100             .005   5      .05     .1   0  5  2-11   .01    .01   5   1   none c8n
mocov3 clevr_count          .001   .1     0       .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 clevr_dist           .0001  .01    .0001   .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 dmlab                .005   .005   .005    .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 dsprites_loc         .0005  10     10      .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 dsprites_ori         .001   10     .01     .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 dtd                  .005   .001   .05     .2   0  10 11-11  .05    .03   5   1   none c8n
mocov3 eurosat              .001   .5     0       .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 oxford_flowers102    .005   0      .0001   .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 oxford_iiit_pet      .005   .01    .05     .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 patch_camelyon       .0001  5      .0005   .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 resisc45             .005   .001   .0001   .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 smallnorb_azi        .005   .05    .001    .1   5  10 11-11  .01    .01   5   10  none c8nk
mocov3 smallnorb_ele        .0005  .5     .0005   .1   5  10 11-11  .01    .01   5   10  none c8nk
sup21k caltech101           .005   .05    5       .1   60 10 11-11  0      0     1   10  none c8nk
sup21k cifar100             .005   1      20      .1   20 20 3-11   1      .05   5   1   none c8nk
sup21k clevr_count          .001   .01    10      .1   10 10 11-11  .5     .5    1   1   none c8n
sup21k clevr_dist           5e-05  .001   .5      .1   10 5  11-11  .01    .01   5   1   none c8n
sup21k diabetic_retinopathy .001   .1     1       0    20 10 11-11  .01    .01   5   1   none c8n
sup21k dmlab                .005   0      .05     .1   10 10 11-11  .01    .01   5   1   none c8n
sup21k dsprites_loc         .01    .5     3       0    10 10 11-11  .1     .1    5   10  none c8nk
sup21k dsprites_ori         .01    .001   .0001   0    20 10 3-11   .01    .01   5   1   none c8n
sup21k dtd                  .001   .05    5       .1   10 10 11-11  0      0     5   10  none c8nk
sup21k eurosat              .0005  5      .005    0    20 10 9-11   .5     .01   5   1   none c8n
sup21k oxford_flowers102    .001   .5     3       0    40 10 11-11  .1     .1    5   10  none c8nk
sup21k oxford_iiit_pet      .001   .05    5       .1   5  10 11-11  0      0     10  10  none c8nk
sup21k patch_camelyon       .005   10     5       0    0  10 11-11  .01    .01   5   1   none c8n
sup21k resisc45             .005   .0001  1       0    20 10 0-11   .01    .05   5   1   none c8n
sup21k smallnorb_azi        .001   1      1       .1   20 10 11-11  .01    .01   5   1   none c8n
sup21k smallnorb_ele        5e-05  .01    3       0    5  10 11-11  0      .1    5   10  none 8nk
"""
# Warm-up start / minimum lr where a yaml differs from 1e-8 / 1e-9; batch / images per class where
# it differs from 32 / 2.
WARMUP_MIN = {('sup21k', 'dsprites_loc'): (1e-7, 1e-8),
              ('sup21k', 'oxford_flowers102'): (1e-7, 1e-8),
              ('sup21k', 'smallnorb_ele'): (1e-7, 1e-8)}
BATCH = {('sup21k', 'stanford_dogs'): (64, 4)}
FALLBACK_FLAGS = {'mae': 'c8', 'mocov3': 'c8nk', 'sup21k': 'c8n'}
_FLAGS = {'c': 'davpt.train_cls', '8': 'davpt.init_div8', 'n': 'davpt.train_norm1',
          'k': 'davpt.train_k_bias', 'm': 'davpt.mask_prompts'}


def flag_fields(flags: str) -> dict[str, bool]:
  """The five boolean fields from a flags string ('-' = none)."""
  unknown = set(flags) - set(_FLAGS) - {'-'}
  if unknown:
    raise ValueError(f'unknown DA-VPT flags {sorted(unknown)}; known: {sorted(_FLAGS)}')
  return {field: ch in flags for ch, field in _FLAGS.items()}


def parse_recipes(table: str) -> dict[str, dict[str, dict[str, object]]]:
  """{backbone: {task: {dotted config key: value}}} from a recipe table (VTAB, FGVC)."""
  out: dict[str, dict[str, dict[str, object]]] = {}
  for line in table.strip().splitlines():
    if line.startswith('#'):
      continue
    back, task, lr, wd, wd_head, drop, n_other, n_proxy, layers, lp, lc, r, remap, norm, flags = (
        line.split())
    start, end = layers.split('-')
    row = {'train.lr': float(lr), 'train.wd': float(wd), 'train.wd_head': float(wd_head),
           'model.drop_path': float(drop), 'davpt.num_other': int(n_other),
           'davpt.num_proxies': int(n_proxy), 'davpt.proxy_start': int(start),
           'davpt.proxy_end': int(end), 'davpt.lambda_patch': float(lp),
           'davpt.lambda_cls': float(lc), 'davpt.scale': float(r),
           'davpt.dynamic_kmeans': int(remap), 'davpt.prompt_norm': norm}
    row.update(flag_fields(flags))
    warm, low = WARMUP_MIN.get((back, task), (1e-8, 1e-9))
    batch, per_class = BATCH.get((back, task), (32, 2))
    row.update({'train.warmup_init': warm, 'train.min_lr': low, 'train.batch_size': batch,
                'data.images_per_class': per_class})
    out.setdefault(back, {})[task] = row
  return out


BACKBONES = {
    'sup21k': dict(format='npz', pool='cls'),
    'mae': dict(format='mae', pool='norm_mean'),  # final LN, then mean of x[:,1:] incl. prompts
    'mocov3': dict(format='mocov3', pool='cls'),
}


def davpt_config(task: str, backbone: str) -> common.ConfigDict:
  """The unlocked DA-VPT config (shared with configs/davpt_fgvc.py)."""
  if backbone not in BACKBONES:
    raise ValueError(f'unknown backbone {backbone!r}; known: {sorted(BACKBONES)}')
  b = BACKBONES[backbone]
  c = common.base()
  c.method = 'davpt'
  c.init.format = b['format']
  c.model.update(pool=b['pool'], drop_path=0.1, head_init='normal', head_init_std=0.02,
                 head_bias_init=0.0)
  c.data.update(task=task, normalization='imagenet', resize='bicubic', resize_to='shorter_side',
                crop_pct=1.0, antialias=True, augment=False, sampler='class_balanced',
                images_per_class=2)
  c.davpt = common.davpt()
  c.train.update(optimizer='adamw', lr=1e-3, lr_scale_by_batch=False, batch_size=32, epochs=100,
                 warmup_epochs=10, warmup_init=1e-8, min_lr=1e-9, schedule_per='step',
                 cosine_shift=False, grad_clip_value=10.0, wd=1e-4, wd_head=1e-4, drop_last=True)
  return c


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='cifar100', backbone='mae')
  c = davpt_config(a.task, a.backbone)
  recipes = parse_recipes(VTAB)[a.backbone]
  if common.tasks.canonical_task(a.task) in recipes:
    common.apply_recipe(c, a.task, recipes)
  else:  # no release yaml for this task
    for dotted, value in flag_fields(FALLBACK_FLAGS[a.backbone]).items():
      common.set_field(c, dotted, value)
  return common.finalize(c)
