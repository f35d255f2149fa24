"""Package layout that pyproject.toml cannot express: the top-level folders ``systems/``,
``potentials/`` and ``runs/presets/`` ship inside the package as ``molsample.cards``,
``molsample.potentials`` and ``molsample.presets`` (found by :mod:`molsample.runtime.resources`)."""

from setuptools import find_packages, setup

DATA_PACKAGES = {
    "molsample.cards": "systems",
    "molsample.potentials": "potentials",
    "molsample.presets": "runs/presets",
}

setup(
    packages=find_packages(include=["molsample", "molsample.*"]) + list(DATA_PACKAGES) + ["molsample.data.models"],
    package_dir=DATA_PACKAGES,
    package_data={
        "molsample.cards": ["*.toml", "*.pdb"],
        "molsample.potentials": ["*.xml", "*.md"],
        "molsample.presets": ["*.toml"],
        "molsample.data.models": ["*.pt", "*.md"],
    },
)
