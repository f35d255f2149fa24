"""Training: flow matching (pretraining) and Tilt Matching (annealed reward tilts)."""
