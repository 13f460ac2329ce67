"""prompt_jax: visual prompt tuning of Vision Transformers in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name='prompt_jax',
    version='0.1.0',
    description='Visual prompt tuning (VPT, SHIP, DA-VPT, SPT, SAP) for ViTs in JAX/Flax',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['prompt_jax', 'prompt_jax.*', 'configs', 'benchmarks']),
    python_requires='>=3.10',
    install_requires=[
        'jax>=0.4.30',
        'flax>=0.10',
        'optax>=0.2.3',
        'orbax-checkpoint>=0.11',
        'tensorflow-cpu>=2.16; platform_machine=="x86_64"',
        'tensorflow>=2.16; platform_machine!="x86_64"',
        'tensorflow-datasets>=4.9.4',
        'tensorboard',
        'ml-collections>=0.1.1',
        'clu>=0.0.12',
        'numpy',
        'scipy',
        'scikit-learn',
        'absl-py',
        'pillow',
        'matplotlib',
        'safetensors',
        'regex',  # CLIP BPE tokenizer
    ],
    extras_require={
        'test': [
            'pytest',
            'torch==2.13.0',
            'transformers>=4.40',
            'nbclient',
            'nbformat',
            'ipykernel',
        ],
        'torch': ['torch'],
        'ftfy': ['ftfy'],  # the CLIP release's text cleaning (optional)
    },
)
