"""The reference room: classical samplers that need no flow. Langevin/MALA kernels (``langevin``,
``mala``, ``kernels``), parallel tempering, OpenMM molecular dynamics and replica exchange (``md``,
``remd``), starting configurations, and the cached reference samples of a system (``reference``) from
the registered reference methods (``reference_settings``: what a method is; one module each:
``reference_exact``, ``reference_chains``, ``reference_md``, ``reference_remd``; ``reference_methods``:
all of them and the pick of ``auto``)."""
