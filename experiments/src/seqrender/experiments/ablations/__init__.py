"""Ablation sweeps (experiment=ablate_*): the papers' results to compare against, and the summary of
a sweep directory (experiments/summarise.py)."""
