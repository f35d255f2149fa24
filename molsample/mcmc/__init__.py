"""The reference room: classical samplers that need no flow. Langevin/MALA kernels (``langevin``,
``mala``, ``kernels``), parallel tempering, OpenMM molecular dynamics and replica exchange (``md``,
``remd``), starting configurations, and the cached reference samples of a system with the settings
that pick and tune their sampler (``reference``, ``reference_settings``)."""
