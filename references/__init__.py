"""Independent reference implementations that never import prompt_jax: PyTorch models of the
methods' train steps (torch_*.py) and PIL's image resizing (pil_reference.py). The tests' parity
references, also timed by benchmarks/ (`from references import torch_vit`)."""
