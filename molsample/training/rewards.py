"""Rewards for Tilt Matching: r(x) such that tilting the a = 0 distribution by e^{r} gives the target.

Three modes (docs/tilt-matching.md, "Reward modes for Boltzmann targets"), each a
:class:`RewardMode` registered in :data:`REWARD_MODES` (``--mode`` and the config checks read it):

* ``temperature``: the a = 0 distribution is the Boltzmann distribution at kT0 > kT (a flow
  pretrained on high-temperature samples); r(x) = −(1/kT − 1/kT0)·E(x). Every level a is the
  Boltzmann distribution at inverse temperature 1/kT0 + a(1/kT − 1/kT0). kT0 = kT gives r ≡ 0:
  the data are already at the target and there is nothing to tilt.
* ``prior``: the a = 0 distribution is the base Gaussian ρ0; r(x) = −E(x)/kT − log ρ0(x).
* ``reward``: any r(x) (the 2-D ring bump, a user function) scaled by β; the target is
  exp(−E/kT)·e^{β r}.

Every reward reports non-finite values as they are (the trainer drops them) and counts the
energy evaluations it spends.

Energy regularization: flows early in training produce configurations with overlapping atoms
whose energies (10⁷ kT for LJ) would dominate any reward. With ``energy_cap`` E_c set, the
reward sees E_reg = E for E ≤ E_c and E_c + kT·log(1 + (E − E_c)/kT) above — unchanged where
the Boltzmann distribution has its mass, compressed where it has none. The final importance
weights always use the true energy (:meth:`TiltReward.log_final_target`), so the cap changes
what the tilt aims at only in regions of negligible probability and never biases the weighted
estimates.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from molsample.energies.toy2d import bump_reward, quadratic_reward
from molsample.errors import ConfigError
from molsample.systems.cards import System

@dataclasses.dataclass
class TiltReward:
    """A reward r(x) with the log-density of the distribution it tilts.

    Attributes:
        mode: one of :data:`REWARD_MODES`.
        system: the target system (its energy and kT define the final target).
        kT0: temperature of the a = 0 distribution (``temperature`` mode), energy unit.
        beta: reward scale (``reward`` mode).
        fn: the raw reward function ``(batch, n, d) -> (batch,)`` (``reward`` mode).
        base_log_prob: log ρ0 of the base Gaussian (``prior`` mode).
        energy_cap: E_c of the soft energy cap seen by the reward (``None``: no cap).
    """

    mode: str
    system: System
    kT0: float | None = None
    beta: float = 1.0
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    base_log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None
    energy_cap: float | None = None
    n_energy_evals: int = 0

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x) in the system's unit, ``(batch,)``; counted in :attr:`n_energy_evals`."""
        self.n_energy_evals += x.shape[0]
        return self.system.energy.energy(x)

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward and energy of each sample, ``((batch,), (batch,))`` — one energy evaluation."""
        e = self.energy(x)
        return self.from_energy(x, e), e

    def regularized_energy(self, e: torch.Tensor) -> torch.Tensor:
        """E_reg: the energy with the soft cap above :attr:`energy_cap` (identity without a cap)."""
        if self.energy_cap is None:
            return e
        kT, cap = self.system.kT, self.energy_cap
        excess = (e - cap).clamp_min(0.0)
        return torch.where(e > cap, cap + kT * torch.log1p(excess / kT), e)

    def from_energy(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """r(x) given already evaluated energies ``e``."""
        return REWARD_MODES[self.mode].reward(self, x, self.regularized_energy(e))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.evaluate(x)[0]

    def log_ref_from_energy(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Unnormalized log-density of the a = 0 distribution this reward tilts."""
        return REWARD_MODES[self.mode].log_ref(self, x, self.regularized_energy(e))

    def log_target_from_energy(self, x: torch.Tensor, e: torch.Tensor, a: float = 1.0) -> torch.Tensor:
        """Unnormalized log-density of level ``a``: log ρ_ref(x) + a·r(x), ``(batch,)``."""
        return self.log_ref_from_energy(x, e) + a * self.from_energy(x, e)

    def log_level_target(self, x: torch.Tensor, e: torch.Tensor, a: float = 1.0) -> torch.Tensor:
        """Unnormalized log-density of level ``a`` with the true (uncapped) energy ``e``, ``(batch,)``.

        Equal to :meth:`log_target_from_energy` without the soft cap, and to
        :meth:`log_final_target` at a = 1; the per-level ESS in the history uses it.
        """
        cap, self.energy_cap = self.energy_cap, None
        try:
            return self.log_target_from_energy(x, e, a)
        finally:
            self.energy_cap = cap

    def log_final_target(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Unnormalized log-density of the true target with the true energy ``e``, ``(batch,)``:
        −E/kT, times e^{β f(x)} in reward mode. Final importance weights use this."""
        log_pi = -e / self.system.kT
        if REWARD_MODES[self.mode].tilts_target:
            log_pi = log_pi + self.beta * self.fn(x)
        return log_pi


RewardFn = Callable[[TiltReward, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class RewardMode:
    """A registered reward mode.

    Attributes:
        name: the value of ``--mode`` and ``RunConfig.mode``.
        reward: ``reward(tilt_reward, x, e) -> (batch,)``: r(x) from the (capped) energy ``e``.
        log_ref: ``log_ref(tilt_reward, x, e) -> (batch,)``: the unnormalized log-density of the a = 0
            distribution that r tilts.
        build: ``build(system, kT0=, beta=, base_log_prob=, fn=, energy_cap=) -> TiltReward``, checking
            what the mode needs.
        tilts_target: the final target is exp(−E/kT)·e^{β f(x)} (not the Boltzmann distribution alone).
    """

    name: str
    reward: RewardFn
    log_ref: RewardFn
    build: Callable[..., TiltReward]
    tilts_target: bool = False


#: Reward modes by name, in registration order.
REWARD_MODES: dict[str, RewardMode] = {}


def register_reward_mode(mode: RewardMode) -> RewardMode:
    """Add ``mode`` to :data:`REWARD_MODES` (``--mode``, ``RunConfig.mode`` and :func:`make_reward` read it)."""
    if mode.name in REWARD_MODES:
        raise ValueError(f"reward mode {mode.name!r} is registered twice")
    REWARD_MODES[mode.name] = mode
    return mode


def _build_temperature(system: System, *, kT0: float | None, energy_cap: float | None, **_: object) -> TiltReward:
    if kT0 is None or not kT0 >= system.kT:
        raise ConfigError(
            f"temperature mode needs kT0 ≥ kT = {system.kT:g} {system.energy_unit}, got {kT0}; "
            "raise temperature_factor (kT0 = factor·kT) to 1 or above"
        )
    return TiltReward("temperature", system, kT0=float(kT0), energy_cap=energy_cap)


def _build_prior(system: System, *, base_log_prob: Callable | None, energy_cap: float | None,
                 **_: object) -> TiltReward:
    if base_log_prob is None:
        raise ConfigError("prior mode needs the base distribution's log_prob")
    return TiltReward("prior", system, base_log_prob=base_log_prob, energy_cap=energy_cap)


def _build_reward(system: System, *, beta: float | None, fn: Callable | None, energy_cap: float | None,
                  **_: object) -> TiltReward:
    card_fn, card_beta = (fn, 1.0) if fn is not None else reward_function_from_card(system)
    return TiltReward("reward", system, beta=float(beta if beta is not None else card_beta), fn=card_fn,
                      energy_cap=energy_cap)


# temperature: from the Boltzmann distribution at kT0 > kT, r = −(1/kT − 1/kT0)·E
register_reward_mode(RewardMode(
    "temperature",
    reward=lambda r, x, e: -(1.0 / r.system.kT - 1.0 / r.kT0) * e,
    log_ref=lambda r, x, e: -e / r.kT0,
    build=_build_temperature,
))
# prior: from the base distribution ρ0, r = −E/kT − log ρ0
register_reward_mode(RewardMode(
    "prior",
    reward=lambda r, x, e: -e / r.system.kT - r.base_log_prob(x),
    log_ref=lambda r, x, e: r.base_log_prob(x),
    build=_build_prior,
))
# reward: from the Boltzmann distribution at kT, r = β·f(x)
register_reward_mode(RewardMode(
    "reward",
    reward=lambda r, x, e: r.beta * r.fn(x),
    log_ref=lambda r, x, e: -e / r.system.kT,
    build=_build_reward,
    tilts_target=True,
))
#: the reward modes' names (``--mode``)
MODES = tuple(REWARD_MODES)


def reward_function_from_card(system: System) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """The raw reward and β named in the card's ``[reward]`` table (types ``bump``, ``quadratic``)."""
    table = system.card.get("reward")
    where = system.card_path or system.name
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: mode 'reward' needs a [reward] table in the system card "
                          "(type = \"bump\" or \"quadratic\"), or pick --mode temperature/prior")
    rtype = table.get("type")
    beta = float(table.get("beta", 1.0))
    if rtype == "bump":
        center = tuple(float(c) for c in table.get("center", (4.0, 0.0)))
        scale = float(table.get("scale", 2.5))
        return (lambda x: bump_reward(x, center=center, scale=scale)), beta
    if rtype == "quadratic":
        try:
            lam = torch.tensor(table["precision"], dtype=torch.float64)
            shift = torch.tensor(table["shift"], dtype=torch.float64)
        except KeyError as exc:
            raise ConfigError(f"{where}: [reward] of type quadratic needs key {exc}") from exc
        return (lambda x: quadratic_reward(x, lam, shift)), beta
    raise ConfigError(f"{where}: [reward].type = {rtype!r} is not known; use bump or quadratic")


def make_reward(
    system: System,
    mode: str,
    *,
    kT0: float | None = None,
    beta: float | None = None,
    base_log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    energy_cap: float | None = None,
) -> TiltReward:
    """Build the reward of ``mode`` for ``system``.

    Args:
        kT0: a = 0 temperature in the energy unit (``temperature`` mode; at least system.kT).
        beta: reward scale (``reward`` mode; default the card's [reward].beta).
        base_log_prob: log-density of the base distribution (``prior`` mode).
        fn: a reward function overriding the card's (``reward`` mode).
        energy_cap: E_c of the soft energy cap of the reward (see the module docstring).
    """
    if mode not in REWARD_MODES:
        raise ConfigError(f"unknown reward mode {mode!r}; use one of {', '.join(REWARD_MODES)}")
    return REWARD_MODES[mode].build(system, kT0=kT0, beta=beta, base_log_prob=base_log_prob, fn=fn,
                                    energy_cap=energy_cap)
