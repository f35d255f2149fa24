"""One module per CLI command; :mod:`molsample.cli` registers them."""
