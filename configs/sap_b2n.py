r"""SAP on CLIP ViT-B/16, base-to-novel (docs/specs/04-spt-sap.md): 16 shots, SGD, 20 epochs,
batch 4.

  python -m prompt_jax.main --config=configs/sap_b2n.py:task=dtd --workdir=/tmp/sap_dtd \
      --config.init.checkpoint=/path/ViT-B-16.pt \
      --config.data.split_file=/path/split_zhou_DTD.json \
      --config.data.data_dir=/path/dtd/images --config.sap.descriptions=/path/dtd.json
with config.init.checkpoint = OpenAI ViT-B-16.pt (format clip_openai; bpe_simple_vocab_16e6.txt.gz
next to it or at sap.bpe_path), data.split_file = CoOp split json, data.data_dir = its image folder,
sap.descriptions = the class-description JSON. Results: base / novel / hm. Zero-shot CLIP baseline
only: --config.program=clip_zeroshot (program 'b2n' reports it too, under 'zeroshot').
Optimiser: SGD lr 0.0025 (no batch scaling), momentum .9, wd 5e-4 on every trainable tensor,
1-D ones included (decay_1d: Dassl's build_optimizer over all parameters); lr per epoch, stepped
after the epoch's last batch (trainers/sap.py): epoch 0 = 1e-5 (with a per-epoch schedule and 1
warm-up epoch the linear warm-up IS Dassl's constant warm-up), epoch e >= 1 =
0.5·lr·(1 + cos(π·(e-1)/20)) (warmup_recount: Dassl's WARMUP_RECOUNT=True restarts the cosine
over MAX_EPOCH after warm-up). Options: warmup_recount=False gives cos(π·(e-1)/19), and with
cosine_shift=False cos(π·e/20).
RRC + flip at 224, bicubic, CLIP normalisation. ImageNet: the release keeps the first 3
descriptions per class (--config.sap.max_descriptions=3).
"""

from prompt_jax.configs import common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, task='dtd')
  c = common.base()
  c.method = 'sap'
  c.program = 'b2n'
  c.model.update(variant='B/16', act='quick_gelu', ln_eps=1e-5)
  c.init.update(checkpoint='', format='clip_openai', posemb_resize='bicubic')
  c.data.update(source='fewshot', task=a.task, image_size=224, normalization='clip',
                train_split='train', eval_splits=('test',), val_split='', augment=True,
                split_file='', shots=16, fewshot_seed=1, subset='base')
  c.sap = common.sap()
  c.b2n = common.b2n(eval_split='test')
  c.train.update(epochs=20, batch_size=4, eval_batch_size=100, optimizer='sgd', lr=0.0025,
                 lr_scale_by_batch=False, momentum=0.9, wd=5e-4, wd_head=-1.0,
                 warmup_epochs=1, warmup_init=1e-5, schedule_per='epoch', cosine_shift=True,
                 warmup_recount=True, decay_1d=True,
                 eval_every_epochs=20, checkpoint_every_steps=500, log_every_steps=20,
                 drop_last=True)  # Dassl: drop_last for training when the split >= the batch
  return common.finalize(c)
