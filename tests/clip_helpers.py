"""Shared helpers for the CLIP tests: a tiny random transformers CLIPModel and its weights."""

from __future__ import annotations

import numpy as np

TINY = dict(embed_dim=16, image_size=32, patch_size=8, vision_width=32, vision_layers=2,
            vision_heads=4, context_length=12, vocab_size=64, text_width=32, text_layers=2,
            text_heads=4)


def hf_model(seed: int = 0, **over):
  """A tiny random transformers CLIPModel matching `TINY` (QuickGELU, eos = vocab_size - 1)."""
  import torch
  from transformers import CLIPConfig, CLIPModel
  t = dict(TINY, **over)
  torch.manual_seed(seed)
  text = dict(vocab_size=t['vocab_size'], hidden_size=t['text_width'],
              intermediate_size=4 * t['text_width'], num_hidden_layers=t['text_layers'],
              num_attention_heads=t['text_heads'], max_position_embeddings=t['context_length'],
              hidden_act='quick_gelu', layer_norm_eps=1e-5, eos_token_id=t['vocab_size'] - 1,
              bos_token_id=t['vocab_size'] - 2, pad_token_id=0, projection_dim=t['embed_dim'])
  vision = dict(hidden_size=t['vision_width'], intermediate_size=4 * t['vision_width'],
                num_hidden_layers=t['vision_layers'], num_attention_heads=t['vision_heads'],
                image_size=t['image_size'], patch_size=t['patch_size'], hidden_act='quick_gelu',
                layer_norm_eps=1e-5, projection_dim=t['embed_dim'])
  cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=t['embed_dim'])
  model = CLIPModel(cfg).eval()
  with torch.no_grad():  # random LayerNorm affine / biases so the conversion is really exercised
    for name, p in model.named_parameters():
      if 'norm' in name or name.endswith('bias') or 'embedding' in name:
        p.add_(0.1 * torch.randn_like(p))
    model.logit_scale.fill_(2.0)
  return model


def hf_state_numpy(model) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def to_openai(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The OpenAI state-dict layout of the same weights: renamed keys, q/k/v fused into in_proj.
  Written independently of prompt_jax.checkpoints.clip (key table from the spec)."""
  out = {}
  tower_prefix = {'vision_model': 'visual.', 'text_model': ''}
  for k, v in sd.items():
    if k.endswith('position_ids'):
      continue
    for tower, pre in tower_prefix.items():
      head = f'{tower}.encoder.layers.'
      if k.startswith(head):
        i, rest = k[len(head):].split('.', 1)
        blk = f'{pre}transformer.resblocks.{i}.'
        if rest.startswith('self_attn.q_proj.'):
          kind = rest.rsplit('.', 1)[1]
          qkv = [sd[f'{head}{i}.self_attn.{p}_proj.{kind}'] for p in 'qkv']
          out[f'{blk}attn.in_proj_{kind}'] = np.concatenate(qkv, 0)
        elif rest.startswith(('self_attn.k_proj', 'self_attn.v_proj')):
          pass
        else:
          rest = (rest.replace('self_attn.out_proj', 'attn.out_proj')
                  .replace('layer_norm1', 'ln_1').replace('layer_norm2', 'ln_2')
                  .replace('mlp.fc1', 'mlp.c_fc').replace('mlp.fc2', 'mlp.c_proj'))
          out[blk + rest] = v
        break
    else:
      table = {
          'vision_model.embeddings.class_embedding': 'visual.class_embedding',
          'vision_model.embeddings.position_embedding.weight': 'visual.positional_embedding',
          'vision_model.embeddings.patch_embedding.weight': 'visual.conv1.weight',
          'vision_model.pre_layrnorm.weight': 'visual.ln_pre.weight',
          'vision_model.pre_layrnorm.bias': 'visual.ln_pre.bias',
          'vision_model.post_layernorm.weight': 'visual.ln_post.weight',
          'vision_model.post_layernorm.bias': 'visual.ln_post.bias',
          'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
          'text_model.embeddings.position_embedding.weight': 'positional_embedding',
          'text_model.final_layer_norm.weight': 'ln_final.weight',
          'text_model.final_layer_norm.bias': 'ln_final.bias',
          'logit_scale': 'logit_scale',
      }
      if k in table:
        out[table[k]] = v
      elif k == 'visual_projection.weight':
        out['visual.proj'] = v.T.copy()
      elif k == 'text_projection.weight':
        out['text_projection'] = v.T.copy()
      else:
        raise KeyError(k)
  out['input_resolution'] = np.array(32)  # OpenAI's non-weight entries are ignored
  return out
