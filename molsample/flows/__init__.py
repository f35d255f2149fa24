"""The flow room: everything that makes and weighs samples of a flow. A flow's base distribution
(``distributions``), its interpolant paths (``paths``), the coordinate transform to the system's
Cartesian positions (``transform``, ``internal``, ``internal_base``, ``flow``), the ODE solvers with
exact log-densities (``ode``), the one sampler that draws from a flow (``sampler``), importance
weights and their diagnostics (``weights``, ``diagnostics``), and the corrections of flow samples:
mirroring wrong-handed ones (``reflection``) and SMC refinement (``smc``, ``smc_state``)."""
