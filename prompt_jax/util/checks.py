"""Config rules as small pure functions: each returns [] or one message naming the key, its value
and what it must be. Every layer's checks use them (methods' `check`, the run's validation)."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
  """A config value that cannot work; the message lists every such value and the valid ones."""


def one_of(key: str, value: Any, valid: Any) -> list[str]:
  valid = list(valid)
  return [] if value in valid else [f'{key}={value!r}: must be one of {valid}']


def at_least(key: str, value: Any, low: float) -> list[str]:
  return [] if value >= low else [f'{key}={value!r}: must be >= {low}']


def fraction(key: str, value: float) -> list[str]:
  return [] if 0 <= value < 1 else [f'{key}={value!r}: must be in [0, 1)']


def warmup_within(train: Any) -> list[str]:
  """`train` (config.train): a warm-up longer than training, where the learning rate would never
  reach its peak. The command line and the sweep refuse it; the trainer itself runs it (short
  test runs)."""
  if train.warmup_epochs > train.epochs:
    return [f'train.warmup_epochs={train.warmup_epochs} > train.epochs={train.epochs}: the '
            'learning rate would never reach its peak. Lower --config.train.warmup_epochs or '
            'raise --config.train.epochs.']
  return []
