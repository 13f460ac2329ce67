"""Prompt methods, one file each; each registers itself by name (`base.METHODS`, `base.get`)."""
