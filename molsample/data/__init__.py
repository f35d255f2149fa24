"""Files shipped with the package, no code: ``systems/`` (cards and structures), ``potentials/``
(serialized OpenMM Systems), ``presets/`` (run presets) and ``models/`` (``package:NAME``);
found by :mod:`molsample.runtime.resources`."""
