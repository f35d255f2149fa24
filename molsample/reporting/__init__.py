"""Report figures and the one-page run summary (``molsample report``)."""

from molsample.reporting.report import Report, make_report
from molsample.reporting.stats import WeightSummary, pair_distances, summarize_weights, weighted_histogram

__all__ = ["Report", "make_report", "WeightSummary", "pair_distances", "summarize_weights", "weighted_histogram"]
