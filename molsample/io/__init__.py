"""Run files (HDF5, MDTraj-compatible) and trajectory export."""

from molsample.io.export import ExportResult, export_run, systematic_resample
from molsample.io.hdf5 import SCHEMA_VERSION, RunFile, open_run

__all__ = ["SCHEMA_VERSION", "RunFile", "open_run", "ExportResult", "export_run", "systematic_resample"]
