"""Build metadata lives in pyproject.toml. This file adds what pyproject cannot say: the
repository's top-level configs/ folder is installed as the package `prompt_jax.configs`, so an
installed wheel finds `--config=configs/x.py` from any directory and never installs a top-level
`configs` package."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=['prompt_jax', 'prompt_jax.*']) + ['prompt_jax.configs'],
    package_dir={'prompt_jax.configs': 'configs'},
)
