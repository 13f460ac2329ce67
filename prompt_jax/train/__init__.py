"""The trainer: the loop, the jitted steps, optax masking, the device mesh, checkpoints, the workdir
(a run's identity) and the checks of a run's config."""
