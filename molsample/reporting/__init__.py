"""Report figures and the one-page run summary (``molsample report``)."""

from molsample.reporting.figures import FIGURES, FigureOut, register_figure
from molsample.reporting.report import Report, make_report
from molsample.reporting.stats import pair_distances, weighted_histogram

__all__ = ["FIGURES", "FigureOut", "Report", "make_report", "pair_distances", "register_figure", "weighted_histogram"]
