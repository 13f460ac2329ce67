"""Protocols over many runs: the sweep and its plan, jobs files, results tables and figures,
base-to-novel, the offline demo, and the programs `config.program` names."""
