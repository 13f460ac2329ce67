"""Benchmarks of the train step, the input pipeline and memory against PyTorch (README.md)."""

from benchmarks import torch_side

torch_side.load_triton_first()  # before anything imports TensorFlow (torch_side's docstring)
