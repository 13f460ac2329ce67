"""What a prompt method is to the trainer, and the registry of methods.

A method is a `Method` record, registered by name (`config.method`), in three parts along the
seams of the code that reads them, beside its config section:

`Method.model` (`ModelParts`): what building and filling the model needs.
  family                            'vit' or 'clip': how `config.model.variant` decodes into the
                                    run's `Arch` (models/arch.py; `Method.arch`, once per run).
  build_prompter(config, arch, prepared) -> nn.Module | None
                                    the prompter attached to the ViT of config.model.
  build_model(config, arch, num_classes, prepared) -> nn.Module
                                    a whole model instead (SAP's CLIP); default the ViT + prompter.
                                    apply(variables, images, train) -> (logits [B, C], out dict)
  build_backbone(config, arch) -> nn.Module  the prompt-free backbone (default: the ViT).
  init_params(params, prepared, config) -> params
                                    overwrite fresh (non-backbone) params, e.g. SPT prompts.
  prompt_slots(config, arch, prepared) -> {param path: levels}
                                    which backbone level feeds each leading row of a prompt tensor
                                    (deep VPT 'prompt/prompts' [12,P,D] -> (0..11)); used by prompt
                                    initialisers such as SPT (`config.prompt_init.name`).
  torch_naming                      its PyTorch release's tensor names (methods/torch_names).

`Method.recipe` (`Recipe`): what training needs.
  prepare(ctx) -> prepared          host side, once, before the model is built (SHIP anchors and
                                    prototype bank, SPT prototypes, DA-VPT class clusters); numpy /
                                    python values (a `treeio` tree), cached by the trainer in
                                    workdir/prepared.npz, keyed by the backbone digest and:
  prepare_keys / prepare_files      the dotted config keys `prepare` reads (a section name: all of
                                    it; usually FEATURE_KEYS + the method's own; none declared:
                                    the whole config) and the keys naming input files whose
                                    content it reads.
  loss(inputs: LossInputs) -> (scalar loss, metrics dict of scalars)
  init_state(prepared, config) -> method_state
                                    a pytree carried through train steps, checkpointed (DA-VPT map).
  update_state(method_state, inputs) -> method_state     inside the jitted step (accumulate stats).
  epoch_end(method_state, epoch, config) -> method_state host side, between epochs (DA-VPT remap).
  trainable / frozen: regexes over '/'-joined param paths (trainable may be a function of the
                      config); frozen wins. `config.train.trainable` / `config.train.frozen`
                      override them when non-empty (`Method.trainable_patterns`).

`Method.evaluation` (`Evaluation`): what the evaluation programs and their reports need.
  variant(config) -> str            the run's label in results.json and report tables (default:
                                    the method name; VPT: 'vpt_deep' / 'vpt_shallow').
  open_vocabulary: bool             classifies by class-name text (SAP): the base-to-novel programs
                                    ('b2n', 'clip_zeroshot': protocol/programs.py) run it.

The config section, on `Method` itself:
  config_section: the config section the method reads ('vpt', 'ship', ...; '' = none).
  section(**over) -> ConfigDict     that section's fields with their defaults and comments, defined
                                    in the method's file next to its `register` call (config files
                                    call it; `api.create_model` builds from it).
  check(config) -> [message]        the method's own validation rules (its section's ranges and
                                    choices), run with every other rule
                                    (prompt_jax/train/validation.py).
  machine_keys: dotted keys naming files of this machine (paths), which never make two runs
                differ (prompt_jax/train/workdir.py `same_run`); their content is keyed elsewhere.

Methods are found by name through `METHODS` (methods/registry.py): a new method is one file
(in prompt_jax/methods/, or any module imported before the config is used, e.g. by its config
file) that calls `register` (docs/extending.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import optax

from prompt_jax.checkpoints import backbone
from prompt_jax.methods.registry import INITIALIZER_CHECKS, INITIALIZERS, METHODS
from prompt_jax.models import arch as arch_lib

Array = Any
Arch = arch_lib.Arch
Config = ml_collections.ConfigDict


# The config keys that decide the frozen backbone's features of the training split (with the
# backbone digest, which covers init.checkpoint / format / posemb_resize and a random init's seed).
# Whole sections, not a list of fields: a field added later (e.g. a new resize option) can then
# never be missed, at the price of recomputing when an unrelated model/data field changes.
FEATURE_KEYS = ('model', 'data')


@dataclasses.dataclass
class PrepareContext:
  """What `prepare` may use: the frozen backbone and the training data (never labels of test)."""

  config: Config
  source: Any                   # prompt_jax.data.source.Source
  backbone: nn.Module           # prompt-free VisionTransformer (no head) with the loaded weights
  backbone_params: Any          # its params
  arch: arch_lib.Arch           # the run's decoded config.model.variant
  workdir: str
  features: Callable[..., dict[str, Any]]  # evaluators.features.extract bound to the backbone
  backbone_digest: str          # prompt_jax.util.tree.digest of backbone_params (cache keys)
  # keys -> sha256 of those dotted config keys' values and the backbone digest: the name of a
  # value derived from them, cached in `workdir` (the trainer hands its workdir's key function).
  cache_key: Callable[[tuple[str, ...]], str] | None = None


@dataclasses.dataclass
class LossInputs:
  logits: Array                 # [B, C]
  out: dict[str, Array]         # the model's aux outputs (pre_logits, blocks, ...)
  # The 'aux' collection: aux['prompt'][name] is the tuple of values the prompter sowed under
  # `name` in this forward pass (one entry per `self.sow('aux', name, v)` call).
  aux: dict[str, Any]
  batch: dict[str, Array]       # image [B,H,W,3], label [B], mask [B]
  method_state: Any
  config: Config


def masked_mean(x: Array, mask: Array) -> Array:
  """Mean of x[B] over rows where mask[B] is True."""
  mask = mask.astype(x.dtype)
  return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def cross_entropy_loss(inputs: LossInputs) -> tuple[Array, dict[str, Array]]:
  """Softmax cross-entropy on labels, ignoring padded rows."""
  logits = inputs.logits.astype(jnp.float32)
  labels = inputs.batch['label']
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  loss = masked_mean(ce, inputs.batch['mask'])
  return loss, {'ce': loss}


def _no_problems(config: Config) -> list[str]:
  del config
  return []


def _identity(x, *args, **kwargs):
  del args, kwargs
  return x


@dataclasses.dataclass(frozen=True)
class ModelParts:
  """What building and filling the model needs (module docstring)."""

  family: str = 'vit'
  build_prompter: Callable[[Config, arch_lib.Arch, Any], nn.Module | None] = (
      lambda config, arch, prepared: None)
  build_model: Callable[[Config, arch_lib.Arch, int, Any], nn.Module] | None = None
  # The prompt-free backbone whose params the checkpoint fills (default: the ViT of config.model);
  # `init(rng, images)` must work on it. Its param names must be a subset of build_model's.
  build_backbone: Callable[[Config, arch_lib.Arch], nn.Module] | None = None
  init_params: Callable[[Any, Any, Config], Any] = _identity
  prompt_slots: Callable[[Config, arch_lib.Arch, Any], dict[str, tuple[int, ...]]] = (
      lambda config, arch, prepared: {})
  # Its PyTorch release's tensor names (methods/torch_names.TorchNaming; export/torch_state.py).
  torch_naming: Any = None


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What training needs (module docstring)."""

  prepare: Callable[[PrepareContext], Any] | None = None
  prepare_keys: tuple[str, ...] = ()
  prepare_files: tuple[str, ...] = ()
  loss: Callable[[LossInputs], tuple[Array, dict[str, Array]]] = cross_entropy_loss
  init_state: Callable[[Any, Config], Any] = lambda prepared, config: {}
  update_state: Callable[[Any, LossInputs], Any] = _identity
  epoch_end: Callable[[Any, int, Config], Any] = _identity
  # Regexes, or a function config -> regexes (e.g. DA-VPT's config-chosen extra biases).
  trainable: tuple[str, ...] | Callable[[Config], tuple[str, ...]] = (r'^prompt/', r'^head/')
  frozen: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What the evaluation programs and their reports need (module docstring)."""

  variant: Callable[[Config], str] | None = None
  # Classifies by class-name text, so classes unseen in training can be scored (CLIP + SAP): the
  # base-to-novel programs run only such methods (prompt_jax.protocol.programs).
  open_vocabulary: bool = False


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  model: ModelParts = ModelParts()
  recipe: Recipe = Recipe()
  evaluation: Evaluation = Evaluation()
  config_section: str = ''
  section: Callable[..., Config] | None = None
  check: Callable[[Config], list[str]] = _no_problems
  machine_keys: tuple[str, ...] = ()

  def arch(self, config: Config) -> arch_lib.Arch:
    """`config.model.variant` decoded in this method's model family (ValueError if unknown)."""
    return arch_lib.decode(config.model.variant, self.model.family)

  def label(self, config: Config) -> str:
    """The variant label of a run (`evaluation.variant(config)`, else the method name), with a
    non-default prompt initialiser appended: 'vpt_deep', 'spt_deep_kmeans',
    'vpt_deep+spt_kmeans'."""
    variant = self.evaluation.variant
    out = variant(config) if variant is not None else self.name
    init = config.get('prompt_init', {})
    if init and init.name != 'default':
      out += f'+{init.name}_{init.strategy}'
    return out

  def build(self, config: Config, num_classes: int, prepared: Any,
            arch: arch_lib.Arch | None = None) -> nn.Module:
    """The whole model (`arch`: the run's, else decoded from the config)."""
    arch = arch or self.arch(config)
    if self.model.build_model is not None:
      return self.model.build_model(config, arch, num_classes, prepared)
    return backbone.build_vit(config, arch, num_classes,
                              self.model.build_prompter(config, arch, prepared))

  def trainable_patterns(self, config: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train regexes, frozen regexes): `config.train.trainable` / `.frozen` when non-empty,
    else the recipe's (`trainable` may be a function of the config)."""
    own = self.recipe.trainable
    own = own(config) if callable(own) else own
    return (tuple(config.train.trainable) or tuple(own),
            tuple(config.train.frozen) or tuple(self.recipe.frozen))


def register(method: Method) -> Method:
  """Registers `method` under `method.name` (`config.method`)."""
  return METHODS.register(method.name)(method)


def get(name: str) -> Method:
  """The method registered as `name` ('vpt', 'linear', 'full', 'ship', 'davpt', 'spt', 'sap')."""
  return METHODS.get(name)


def register_initializer(name: str, check: Callable[[Config], list[str]] | None = None):
  """Decorator registering a prompt initialiser (and its config checks) under `name`."""
  if check is not None:
    INITIALIZER_CHECKS[name] = check
  return INITIALIZERS.register(name)


def get_initializer(name: str) -> Callable[..., Any]:
  return INITIALIZERS.get(name)
