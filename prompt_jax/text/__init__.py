"""Text utilities for CLIP-based methods (the CLIP BPE tokenizer)."""
