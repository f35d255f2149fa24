"""Refusals from the nets' declared capabilities and the reward's declared symmetry, before a run
writes anything (called by :meth:`~molsample.stages.context.RunContext.create` and ``molsample pretrain``).

* A system with ``remove_com = true`` has a base on the centre-of-mass-free subspace; a net that does
  not keep the centre of mass (:attr:`~molsample.nets.NetCapabilities.keeps_centre_of_mass`) moves
  its samples off that subspace, where the base's density and the weights mean nothing.
* The ``aligned`` and ``equivariant-ot`` couplings rotate (and permute) base samples onto their
  partners; that keeps the flow-matching target only when every tilted level is rotation- and
  permutation-invariant, so in the ``reward`` mode the card's ``[reward]`` must declare
  ``invariant = true``.
"""

from __future__ import annotations

from typing import Any

from molsample.errors import ConfigError
from molsample.nets import capabilities, default_net_spec, net_class
from molsample.training.coupling import PERMUTING_COUPLINGS

__all__ = ["check_centre_of_mass", "check_reward_coupling", "check_run_guards"]


def check_centre_of_mass(net_name: str | None, system: Any) -> None:
    """Refuse a Cartesian net that does not keep the centre of mass on a system with ``remove_com``.

    ``net_name`` None is the system's default net (:func:`~molsample.nets.default_net_spec`).
    """
    if not getattr(system, "remove_com", False):
        return
    name = default_net_spec(system, net_name)["name"]
    if not capabilities(net_class(name)).keeps_centre_of_mass:
        raise ConfigError(f"net {name!r} does not keep the centre of mass fixed, but system {system.name!r} has "
                          "remove_com = true: its samples would drift off the centre-of-mass-free subspace the base "
                          "lives on; use --net egnn (or e3nn), i.e. net.name = \"egnn\"")


def check_reward_coupling(coupling: str, mode: str, system: Any) -> None:
    """Refuse a rotating/permuting coupling in the ``reward`` mode unless the card's ``[reward]`` says
    ``invariant = true`` (a reward unchanged by rotations and permutations of the particles)."""
    if mode != "reward" or coupling not in PERMUTING_COUPLINGS:
        return
    table = system.card.get("reward") if isinstance(getattr(system, "card", None), dict) else None
    if isinstance(table, dict) and table.get("invariant") is True:
        return
    raise ConfigError(f"coupling {coupling!r} rotates base samples onto their partners, which needs a reward "
                      f"invariant under rotations and permutations; the [reward] of {system.name!r} does not declare "
                      "invariant = true: use coupling = \"independent\" (--coupling independent), or set "
                      "invariant = true in the card's [reward] if the reward is invariant")


def check_run_guards(cfg: Any, system: Any, mode: str) -> None:
    """Both checks for a run config ``cfg`` (skipped for a start model, which is not trained here, and
    the centre-of-mass one for flows in internal coordinates, which have no centre of mass)."""
    if cfg.start.model is not None:
        return
    if cfg.flow.coordinates == "cartesian":
        check_centre_of_mass(cfg.net.name, system)
    check_reward_coupling(cfg.pretrain.coupling, mode, system)
