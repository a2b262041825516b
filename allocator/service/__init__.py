"""Use cases: each one transaction, opened and committed here and nowhere else."""
