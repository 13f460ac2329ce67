"""The bottom layer: pytree operations, tree files, the console, progress bars, the plug-in
registry, the config schema and config files, config rules, the CPU allocator setting. Imports
nothing else of prompt_jax."""
