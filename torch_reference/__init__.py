"""Independent PyTorch models of the methods' train steps (they never import prompt_jax): the tests'
parity references, also timed by benchmarks/ (`from torch_reference import torch_vit`)."""
