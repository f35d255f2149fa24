"""The system room: a system card (TOML) turned into a :class:`~molsample.systems.cards.System`
(energy, kT, topology, exact sampler) by ``cards`` (``load_system``, the card and energy-type
registries), and the physical constants and unit conversions of ``units``. The energies themselves
live in :mod:`molsample.energies`."""
