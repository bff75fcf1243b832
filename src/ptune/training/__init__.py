"""Training: the loop (optimiser, schedule, dev selection, early stopping), multi-task training,
resumable checkpoints, several processes through Accelerate, and training curves."""
