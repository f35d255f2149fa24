"""Report figures, the one-page run summary (``molsample report``) and the export of run samples as
trajectories (``molsample export``, :mod:`molsample.reporting.export`)."""

from molsample.reporting.figures import FIGURES, FigureOut, register_figure
from molsample.reporting import basins_figure as _basins_figure  # noqa: F401  (registers the "basins" figure)
from molsample.reporting.report import Report, make_report
from molsample.reporting.stats import pair_distances, weighted_histogram

__all__ = ["FIGURES", "FigureOut", "Report", "make_report", "pair_distances", "register_figure", "weighted_histogram"]
