"""DA-VPT's per-task recipes (configs/davpt_vtab.py VTAB, configs/davpt_fgvc.py FGVC) against the
release's yamls: Noahsark/DA-VPT configs/{vtab,fgvc}/*.yaml, the keys our configs hold, transcribed
per file below, read as the release's params.py does (`update_args_from_file_colon`: a key the
parser does not declare is dropped, a key a yaml leaves out keeps the argparse default)."""

import pytest

from prompt_jax.configs import davpt_fgvc
from prompt_jax.configs import davpt_vtab

# Noahsark/DA-VPT params.py argparse defaults of the keys below.
RELEASE_DEFAULTS = {
    'lr': '1e-3', 'weight_decay': '1e-2', 'wd_head': '3.0', 'warmup_lr': '1e-7', 'min_lr': '1e-8',
    'warmup_epochs': '10', 'epochs': '2', 'batch_size': '32', 'samples_per_class': '2',
    'drop_path': '0.0', 'num_prompts': '20', 'proxy_prompt_len': '10',
    'proxy_prompt_start_idx': '11', 'proxy_prompt_end_idx': '11', 'vpt_loss_weight': '0.0',
    'cls_loss_weight': '0.0', 'loss_vpt_scale_ratio': '1.0', 'dynamic_kmeans': '0',
    'vpt_norm': 'none', 'mask': 'false', 'train_cls': 'false', 'init_divide_by8': 'false',
    'norm_norm1': 'false', 'bias_k': 'false', 'criterion': 'proxyanchor', 'model_name': 'vit-B'}

# file -> the keys above that it sets, as written in it (vitb_bird.yaml's first line reads
# `atch_size:32`, so it sets no batch size).
YAMLS = {
    'fgvc/mae_birds.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.05 criterion:proxyanchor '
        'dataset:nabirds drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:false '
        'loss_vpt_scale_ratio:5 lr:0.005 mask:true min_lr:0.000000001 model_name:mae-B '
        'norm_norm1:false num_prompts:10 proxy_prompt_len:20 proxy_prompt_start_idx:8 '
        'train_cls:false vpt_loss_weight:0.05 vpt_norm:none warmup_epochs:10 '
        'warmup_lr:0.00000001 wd_head:0.5 weight_decay:0.01'),
    'fgvc/mae_cars.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.5 criterion:proxyanchor dataset:cars '
        'drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:false loss_vpt_scale_ratio:5 '
        'lr:0.005 mask:true min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:15 proxy_prompt_len:15 proxy_prompt_start_idx:4 train_cls:false '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.1 '
        'weight_decay:0.05'),
    'fgvc/mae_cub200.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.05 criterion:proxyanchor dataset:cub '
        'drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:false loss_vpt_scale_ratio:5 '
        'lr:0.005 mask:true min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:15 proxy_prompt_end_idx:11 proxy_prompt_len:20 proxy_prompt_start_idx:9 '
        'train_cls:false vpt_loss_weight:0.05 vpt_norm:l2 warmup_epochs:10 '
        'warmup_lr:0.00000001 wd_head:0.5 weight_decay:0.01'),
    'fgvc/mae_dogs.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.03 criterion:proxyanchor dataset:dogs '
        'drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:0 '
        'lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false num_prompts:20 '
        'proxy_prompt_len:10 proxy_prompt_start_idx:11 train_cls:true vpt_loss_weight:0.01 '
        'vpt_norm:l2 warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.05 weight_decay:0.0001'),
    'fgvc/mae_flowers.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.1 criterion:proxyanchor dataset:flowers '
        'drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:false loss_vpt_scale_ratio:5 '
        'lr:0.005 mask:true min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_end_idx:11 proxy_prompt_len:40 proxy_prompt_start_idx:5 '
        'train_cls:false vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 '
        'warmup_lr:0.00000001 wd_head:0.5 weight_decay:0.0001'),
    'fgvc/moco_birds.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.05 criterion:proxyanchor dataset:nabirds '
        'drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:5 '
        'lr:0.01 min_lr:0.000000001 model_name:moco-B norm_norm1:true num_prompts:20 '
        'proxy_prompt_len:20 proxy_prompt_start_idx:11 train_cls:true vpt_loss_weight:0.01 '
        'vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.05 weight_decay:0.01'),
    'fgvc/moco_cars.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.05 criterion:proxyanchor dataset:cars '
        'drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:5 '
        'lr:0.005 mask:false min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:10 proxy_prompt_end_idx:11 proxy_prompt_len:20 proxy_prompt_start_idx:10 '
        'train_cls:false vpt_loss_weight:0.05 vpt_norm:none warmup_epochs:10 '
        'warmup_lr:0.00000001 wd_head:0.0001 weight_decay:0.5'),
    'fgvc/moco_cub200.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.02 criterion:proxyanchor dataset:cub '
        'drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:1 lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:40 proxy_prompt_len:20 proxy_prompt_start_idx:11 train_cls:true '
        'vpt_loss_weight:0.1 vpt_norm:l2 warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.1 '
        'weight_decay:1'),
    'fgvc/moco_dogs.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.03 criterion:proxyanchor dataset:dogs '
        'drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:5 '
        'lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true num_prompts:5 '
        'proxy_prompt_len:10 proxy_prompt_start_idx:11 train_cls:true vpt_loss_weight:0.01 '
        'vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.05 weight_decay:0.0001'),
    'fgvc/moco_flowers.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.05 criterion:proxyanchor dataset:flowers '
        'drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:10 lr:0.01 mask:true min_lr:0.000000001 model_name:moco-B '
        'norm_norm1:true num_prompts:5 proxy_prompt_end_idx:11 proxy_prompt_len:10 '
        'proxy_prompt_start_idx:3 train_cls:true vpt_loss_weight:0.05 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.05 weight_decay:1'),
    'fgvc/vitb_bird.yaml': (
        'bias_k:true cls_loss_weight:0.2 criterion:proxyanchor dataset:nabirds '
        'dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:60 lr:0.001 '
        'mask:false min_lr:0.000000001 norm_norm1:true num_prompts:5 proxy_prompt_end_idx:11 '
        'proxy_prompt_len:10 proxy_prompt_start_idx:9 train_cls:true vpt_loss_weight:0.01 '
        'vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:3 weight_decay:0.05'),
    'fgvc/vitb_cars.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.05 criterion:proxyanchor dataset:cars '
        'dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:60 lr:0.001 '
        'mask:false min_lr:0.000000001 norm_norm1:true num_prompts:80 proxy_prompt_end_idx:11 '
        'proxy_prompt_len:60 proxy_prompt_start_idx:11 train_cls:true vpt_loss_weight:0.05 '
        'vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:3 weight_decay:0.05'),
    'fgvc/vitb_cub200.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.05 criterion:proxyanchor dataset:cub '
        'drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.0005 mask:true min_lr:0.000000001 norm_norm1:true '
        'num_prompts:10 proxy_prompt_end_idx:11 proxy_prompt_len:10 proxy_prompt_start_idx:10 '
        'train_cls:true vpt_loss_weight:0.05 vpt_norm:l2 warmup_epochs:10 '
        'warmup_lr:0.00000001 wd_head:5 weight_decay:0.05'),
    'fgvc/vitb_dogs.yaml': (
        'batch_size:64 bias_k:true criterion:proxyanchor dataset:dogs drop_path:0 '
        'dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:1 lr:0.0002 '
        'min_lr:0.000000001 norm_norm1:true num_prompts:20 samples_per_class:4 train_cls:true '
        'vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:3 weight_decay:0.05'),
    'fgvc/vitb_flowers.yaml': (
        'batch_size:32 bias_k:true criterion:proxyanchor dataset:flowers dynamic_kmeans:10 '
        'epochs:100 init_divide_by8:true lr:0.001 min_lr:0.000000001 norm_norm1:true '
        'num_prompts:40 train_cls:true vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:3 weight_decay:0.05'),
    'vtab/mae_caltech101.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:caltech101 drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 weight_decay:0.05'),
    'vtab/mae_camelyon.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:patch_camelyon drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.0001 min_lr:0.000000001 '
        'model_name:mae-B norm_norm1:false num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 '
        'weight_decay:0.5'),
    'vtab/mae_cifar100.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.1 criterion:proxyanchor '
        'dataset:cifar100 drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:true '
        'num_prompts:0 proxy_prompt_len:10 proxy_prompt_start_idx:5 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 '
        'weight_decay:5'),
    'vtab/mae_clerv_count.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:clevr_count drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.001 weight_decay:0.5'),
    'vtab/mae_clevr_dist.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:clevr_dist drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 weight_decay:10'),
    'vtab/mae_dmlab.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor dataset:dmlab '
        'drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.0001 weight_decay:0.5'),
    'vtab/mae_dspr_loc.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:dsprites_loc drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:10 weight_decay:10'),
    'vtab/mae_dspr_ori.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:dsprites_ori drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0 weight_decay:1'),
    'vtab/mae_dtd.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor dataset:dtd '
        'drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 weight_decay:0.5'),
    'vtab/mae_eurosat.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:eurosat drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.0005 min_lr:0.000000001 model_name:mae-B '
        'norm_norm1:false num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 '
        'weight_decay:5'),
    'vtab/mae_flower102.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:oxford_flowers102 drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 '
        'model_name:mae-B norm_norm1:false num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 '
        'weight_decay:0.5'),
    'vtab/mae_resisc45.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:resisc45 drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:mae-B norm_norm1:false '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.005 weight_decay:0.05'),
    'vtab/mae_retinopathy.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.03 criterion:proxyanchor '
        'dataset:retinopathy drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:0 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.01 weight_decay:0.001'),
    'vtab/mae_smallnorb_azi.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:smallnorb_azi drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 '
        'model_name:mae-B norm_norm1:false num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.0005 weight_decay:1'),
    'vtab/mae_smallnorb_ele.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.5 criterion:proxyanchor '
        'dataset:smallnorb_ele drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.0001 min_lr:0.000000001 model_name:mae-B norm_norm1:true '
        'num_prompts:10 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.05 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.1 weight_decay:5'),
    'vtab/moco_caltech101.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:caltech101 drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.01 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:0 proxy_prompt_len:5 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.1 weight_decay:0.0005'),
    'vtab/moco_camelyon.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:patch_camelyon drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.0001 min_lr:0.000000001 '
        'model_name:moco-B norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.0005 weight_decay:5'),
    'vtab/moco_cifar100.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:cifar100 drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:0 proxy_prompt_len:5 proxy_prompt_start_idx:2 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.05 weight_decay:5'),
    'vtab/moco_clevr_count.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:clevr_count drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0 weight_decay:0.1'),
    'vtab/moco_clevr_dist.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:clevr_dist drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.0001 min_lr:0.000000001 model_name:moco-B '
        'norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.0001 weight_decay:0.01'),
    'vtab/moco_dmlab.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor dataset:dmlab '
        'drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.005 weight_decay:0.005'),
    'vtab/moco_dspr_loc.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:dsprites_loc drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.0005 min_lr:0.000000001 model_name:moco-B '
        'norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:10 '
        'weight_decay:10'),
    'vtab/moco_dspr_ori.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:dsprites_ori drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.01 weight_decay:10'),
    'vtab/moco_dtd.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.03 criterion:proxyanchor dataset:dtd '
        'drop_path:0.2 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:0 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.05 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.05 weight_decay:0.001'),
    'vtab/moco_eurosat.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor dataset:eurosat '
        'drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0 weight_decay:0.5'),
    'vtab/moco_flower102.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:oxford_flowers102 drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 '
        'model_name:moco-B norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.0001 weight_decay:0'),
    'vtab/moco_pets.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:oxford_iiit_pet drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 '
        'model_name:moco-B norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.05 weight_decay:0.01'),
    'vtab/moco_resisc45.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:resisc45 drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:moco-B norm_norm1:true '
        'num_prompts:5 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.0001 weight_decay:0.001'),
    'vtab/moco_smallnorb_azi.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:smallnorb_azi drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 '
        'model_name:moco-B norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.001 weight_decay:0.05'),
    'vtab/moco_smallnorb_ele.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:smallnorb_ele drop_path:0.1 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.0005 min_lr:0.000000001 '
        'model_name:moco-B norm_norm1:true num_prompts:5 proxy_prompt_len:10 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.0005 weight_decay:0.5'),
    'vtab/vitb_caltech101.yaml': (
        'batch_size:32 bias_k:true criterion:proxyanchor dataset:caltech101 drop_path:0.1 '
        'dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:1 lr:0.005 '
        'min_lr:0.000000001 norm_norm1:true num_prompts:60 train_cls:true vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:5 weight_decay:0.05'),
    'vtab/vitb_camelyon.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:patch_camelyon dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:0 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:5 weight_decay:10'),
    'vtab/vitb_cifar100.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.05 criterion:proxyanchor '
        'dataset:cifar100 drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:20 proxy_prompt_len:20 proxy_prompt_start_idx:3 train_cls:true '
        'vpt_loss_weight:1 warmup_epochs:10 warmup_lr:0.00000001 wd_head:20 weight_decay:1'),
    'vtab/vitb_clerv_count.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.5 criterion:proxyanchor '
        'dataset:clevr_count drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:1 lr:0.001 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:10 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.5 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:10 weight_decay:0.01'),
    'vtab/vitb_clevr_dist.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:clevr_dist drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.00005 min_lr:0.000000001 model_name:vit-B '
        'norm_norm1:true num_prompts:10 proxy_prompt_len:5 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.5 '
        'weight_decay:0.001'),
    'vtab/vitb_dmlab.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor dataset:dmlab '
        'drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:10 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:0.05 weight_decay:0'),
    'vtab/vitb_dspr_loc.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.1 criterion:proxyanchor '
        'dataset:dsprites_loc drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.01 min_lr:0.00000001 norm_norm1:true num_prompts:10 '
        'train_cls:true vpt_loss_weight:0.1 warmup_epochs:10 warmup_lr:0.0000001 wd_head:3 '
        'weight_decay:0.5'),
    'vtab/vitb_dspr_ori.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:dsprites_ori drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.01 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:20 proxy_prompt_len:10 proxy_prompt_start_idx:3 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.0001 weight_decay:0.001'),
    'vtab/vitb_dtd.yaml': (
        'batch_size:32 bias_k:true criterion:proxyanchor dataset:dtd drop_path:0.1 '
        'dynamic_kmeans:10 epochs:100 init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.001 '
        'min_lr:0.000000001 norm_norm1:true num_prompts:10 train_cls:true vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:5 weight_decay:0.05'),
    'vtab/vitb_eurosat.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:eurosat drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.0005 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:20 proxy_prompt_len:10 proxy_prompt_start_idx:9 train_cls:true '
        'vpt_loss_weight:0.5 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 '
        'wd_head:0.005 weight_decay:5'),
    'vtab/vitb_flower102.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.1 criterion:proxyanchor '
        'dataset:oxford_flowers102 drop_path:0 dynamic_kmeans:10 epochs:100 '
        'init_divide_by8:true loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.00000001 '
        'norm_norm1:true num_prompts:40 train_cls:true vpt_loss_weight:0.1 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.0000001 wd_head:3 weight_decay:0.5'),
    'vtab/vitb_pet.yaml': (
        'batch_size:32 bias_k:true criterion:proxyanchor dataset:oxford_iiit_pet '
        'drop_path:0.1 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:10 lr:0.001 min_lr:0.000000001 norm_norm1:true num_prompts:5 '
        'train_cls:true vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:5 '
        'weight_decay:0.05'),
    'vtab/vitb_resisc45.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.05 criterion:proxyanchor '
        'dataset:resisc45 drop_path:0 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.005 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:20 proxy_prompt_len:10 proxy_prompt_start_idx:0 train_cls:true '
        'vpt_loss_weight:0.01 vpt_norm:none warmup_epochs:10 warmup_lr:0.00000001 wd_head:1 '
        'weight_decay:0.0001'),
    'vtab/vitb_retinopathy.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:retinopathy dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:20 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:1 weight_decay:0.1'),
    'vtab/vitb_smallnorb_azi.yaml': (
        'batch_size:32 bias_k:false cls_loss_weight:0.01 criterion:proxyanchor '
        'dataset:smallnorb_azi drop_path:0.1 dynamic_kmeans:1 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.001 min_lr:0.000000001 model_name:vit-B norm_norm1:true '
        'num_prompts:20 proxy_prompt_len:10 train_cls:true vpt_loss_weight:0.01 vpt_norm:none '
        'warmup_epochs:10 warmup_lr:0.00000001 wd_head:1 weight_decay:1'),
    'vtab/vitb_smallnorb_ele.yaml': (
        'batch_size:32 bias_k:true cls_loss_weight:0.1 criterion:proxyanchor '
        'dataset:smallnorb_ele drop_path:0 dynamic_kmeans:10 epochs:100 init_divide_by8:true '
        'loss_vpt_scale_ratio:5 lr:0.00005 min_lr:0.00000001 norm_norm1:true num_prompts:5'),
}

BACKBONE = {'mae': 'mae', 'moco': 'mocov3', 'vitb': 'sup21k'}
TASK = {'bird': 'nabirds', 'birds': 'nabirds', 'cars': 'stanford_cars', 'cub200': 'cub',
        'dogs': 'stanford_dogs', 'flowers': 'oxford_flowers', 'clerv_count': 'clevr_count',
        'camelyon': 'patch_camelyon', 'dspr_loc': 'dsprites_loc', 'dspr_ori': 'dsprites_ori',
        'flower102': 'oxford_flowers102', 'retinopathy': 'diabetic_retinopathy',
        'pet': 'oxford_iiit_pet', 'pets': 'oxford_iiit_pet'}


def _executed(text):
  args = dict(RELEASE_DEFAULTS)
  args.update(kv.split(':', 1) for kv in text.split())
  return args


def _want(a):
  t = lambda k: a[k] == 'true'
  return {
      'train.lr': float(a['lr']), 'train.wd': float(a['weight_decay']),
      'train.wd_head': float(a['wd_head']), 'train.warmup_init': float(a['warmup_lr']),
      'train.min_lr': float(a['min_lr']), 'train.warmup_epochs': int(a['warmup_epochs']),
      'train.epochs': int(a['epochs']), 'train.batch_size': int(a['batch_size']),
      'data.images_per_class': int(a['samples_per_class']),
      'model.drop_path': float(a['drop_path']), 'davpt.num_other': int(a['num_prompts']),
      'davpt.num_proxies': int(a['proxy_prompt_len']),
      'davpt.proxy_start': int(a['proxy_prompt_start_idx']),
      'davpt.proxy_end': int(a['proxy_prompt_end_idx']),
      'davpt.lambda_patch': float(a['vpt_loss_weight']),
      'davpt.lambda_cls': float(a['cls_loss_weight']),
      'davpt.scale': float(a['loss_vpt_scale_ratio']),
      'davpt.dynamic_kmeans': int(a['dynamic_kmeans']), 'davpt.prompt_norm': a['vpt_norm'],
      'davpt.mask_prompts': t('mask'), 'davpt.train_cls': t('train_cls'),
      'davpt.init_div8': t('init_divide_by8'), 'davpt.train_norm1': t('norm_norm1'),
      'davpt.train_k_bias': t('bias_k'),
      'davpt.loss': {'proxyanchor': 'proxy_anchor', 'proxynca': 'proxy_nca'}[a['criterion']]}


def _get(c, dotted):
  node = c
  for part in dotted.split('.'):
    node = node[part]
  return node


@pytest.mark.parametrize('name', sorted(YAMLS))
def test_recipe_row_is_the_release_yaml(name):
  bench, stem = name[:-len('.yaml')].split('/')
  back, task = stem.split('_', 1)
  module = {'vtab': davpt_vtab, 'fgvc': davpt_fgvc}[bench]
  c = module.get_config(f'task={TASK.get(task, task)},backbone={BACKBONE[back]}')
  a = _executed(YAMLS[name])
  got = {k: _get(c, k) for k in _want(a)}
  assert got == _want(a), name


def test_every_release_yaml_is_transcribed():
  vtab = [n for n in YAMLS if n.startswith('vtab/')]
  assert len(vtab) == 46 and len(YAMLS) == 61
  # How many of the release's VTAB yamls set each flag true.
  sets = lambda key: sum(f'{key}:true' in YAMLS[n] for n in vtab)
  assert (sets('train_cls'), sets('init_divide_by8'), sets('norm_norm1'), sets('bias_k')) == (
      45, 46, 34, 19)


def test_task_without_release_yaml_keeps_defaults_with_common_flags():
  c = davpt_vtab.get_config('task=svhn,backbone=mocov3')
  assert c.recipe_task == '' and c.train.lr == 1e-3
  assert c.davpt.train_cls and c.davpt.init_div8 and c.davpt.train_norm1 and c.davpt.train_k_bias
  with pytest.raises(ValueError, match='no DA-VPT FGVC recipe'):
    davpt_fgvc.get_config('task=cifar100,backbone=mae')


# Keys every one of the 61 yamls sets to the same value (bias_q: false or absent, default false):
# fixed in the method and the shared recipe rather than per row.
SAME_IN_ALL = {'bias_fc2': 'true', 'bias_norm2': 'true', 'bias_proj': 'true', 'bias_v': 'true',
               'class_sampler': 'true', 'sched_on_updates': 'true', 'criterion': 'proxyanchor',
               'epochs': '100', 'kmeans_norm': 'layer', 'initial_mapping': 'kmeans',
               'fp16': 'true'}


@pytest.mark.parametrize('module', [davpt_vtab, davpt_fgvc])
def test_keys_the_yamls_share_are_the_shared_recipe(module):
  c = module.get_config('backbone=mocov3')
  assert c.data.sampler == 'class_balanced'               # class_sampler
  assert c.train.schedule_per == 'step'                   # sched_on_updates
  assert SAME_IN_ALL['criterion'] == 'proxyanchor' and c.davpt.loss == 'proxy_anchor'
  assert c.train.epochs == int(SAME_IN_ALL['epochs'])
  assert c.train.optimizer == 'adamw' and c.train.grad_clip_value == 10.0  # train.py defaults
  # bias_fc2 / bias_norm2 / bias_proj / bias_v (and not bias_q): the method's own trainable set,
  # tests/methods/test_davpt.py::test_trainable_set_and_configs. fp16 autocast: we train in
  # float32 (model.compute_dtype='bfloat16' is the reduced-precision option).
  assert c.model.compute_dtype == 'float32'
