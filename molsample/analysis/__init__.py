"""The analysis room: judging samples. Metrics against reference samples (``metrics``: energy and
distance Wasserstein distances, sliced and equivariant W2), the integrated autocorrelation time of a
series (``autocorrelation``), and the configuration geometry the metrics and the training couplings
share (``geometry``: random rotations, Kabsch alignment, particle assignment, principal frames)."""
