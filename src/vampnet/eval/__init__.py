"""Evaluation: objective metrics (eval.metrics), the Opus baseline (eval.opus) and, built on them, the paper's
experiments."""
