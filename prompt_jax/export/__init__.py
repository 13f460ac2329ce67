"""What leaves a run: the sealed orbax export of tuned prompts + head, the PyTorch state dicts, and
scoring / predicting from an export."""
