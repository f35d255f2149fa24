"""Molecule geometry: Z-matrices (the placement order of internal coordinates) built from a bond graph."""
