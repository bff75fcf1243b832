"""Inference: prediction and scoring, the mixed-task prompt bank and ensembles, and generation."""
