"""Run files (HDF5, MDTraj-compatible), caches and atomic file writes.

Import from the submodules: ``molsample.io.hdf5`` (RunFile, open_run), ``molsample.io.cache``
(digest, save_cached, load_cached), ``molsample.io.atomic``. Importing this package loads none of them.
"""
