"""Report figures and the one-page run summary (``molsample report``)."""

from molsample.reporting.report import Report, make_report
from molsample.reporting.stats import pair_distances, weighted_histogram

__all__ = ["Report", "make_report", "pair_distances", "weighted_histogram"]
