"""Run files (HDF5, MDTraj-compatible), trajectory export and atomic file writes.

Import from the submodules: ``molsample.io.hdf5`` (RunFile, open_run), ``molsample.io.export``
(export_run), ``molsample.io.atomic``. Importing this package loads none of them.
"""
