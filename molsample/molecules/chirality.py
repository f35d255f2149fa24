r"""Chirality of sampled molecules: detect the handedness of chiral centres, fold mirror images.

An E(3)-equivariant flow (EGNN) started from a reflection-symmetric base density gives a
configuration x and its mirror image the same density, so it samples both enantiomers of a
chiral molecule (L- and D-alanine dipeptide) in equal measure. This module

* finds chiral centres: from a system card (``chiral_centers = [...]``) or from the bonds of a
  topology (:func:`chiral_centers_from_topology`);
* measures the handedness of every sample at every centre from the sign of the signed volume
  V = (a − c)·((b − c) × (d − c)) of the centre c and three of its neighbours (a, b, d)
  (:func:`signed_volumes`, :func:`chirality`; +1 = the handedness of the reference structure);
* mirrors every sample that is the mirror image of the reference stereoisomer
  (:func:`reflect_wrong_handed`) by inversion through its centre of mass, x ↦ 2x̄ − x.

Why the fold keeps importance weights valid. The inversion M is an isometry: it keeps every
interatomic distance, hence any force-field energy, and it keeps the centre of mass, hence the
CoM-free Gaussian density. If the model density q is reflection invariant (q(Mx) = q(x), true for
an EGNN flow from a CoM-free Gaussian), the folded samples have density
q_f(x) = q(x) + q(Mx) = 2 q(x) on the reference-handed set. The target restricted to the reference
stereoisomer has normalizer Z_ref = Z / 2 (M maps one enantiomer onto the other and keeps the
energy), so the folded weights are logw − log 2 — the same self-normalized weights and ESS, and a
log Z estimate that is log Z_ref (:func:`enantiomer_log_weights`). Do not fold samples of a model
that is not reflection invariant (``E3NNVelocity`` with ``chiral=True``): its density of the
mirror image is not q(x).

The same folded target for a chiral model. Folding gives samples of the folded target
π_f(x) = π(x) + π(Mx) = 2π(x) on the reference side, with log Z_f = log Z. A chiral model's
samples are weighted against π_f by :func:`drop_wrong_handed_log_weights`: log w + log 2 for
reference-handed samples, −inf (weight 0) for mirror images, which π_f does not contain. Both
routes then have the same target, the same log Z, and :func:`enantiomer_log_weights` turns
either into single-stereoisomer weights. The ESS of a chiral model counts its wrong-handed
samples as wasted.

Molecules with several centres: a sample whose centres are *all* inverted is the enantiomer and is
folded; a sample with some centres inverted (a diastereomer) cannot be fixed by a reflection, is
left as it is, counted as ``"mixed"`` and gets zero weight for the single-stereoisomer target.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from molsample.errors import ConfigError, ShapeError
from molsample.molecules.topology_graph import atomic_number, bond_graph, find_atom, wl_colours

__all__ = [
    "ChiralCenter",
    "chiral_centers_from_topology",
    "chiral_centers_from_card",
    "chiral_centers_for_system",
    "signed_volumes",
    "chirality",
    "wrong_handed_mask",
    "reflect_wrong_handed",
    "mirror_where",
    "chirality_fractions",
    "enantiomer_log_weights",
    "drop_wrong_handed_log_weights",
]

#: handedness labels of a card entry whose atoms are (N, CA, C, CB): L ⟺ V > 0
_AMINO_ACID_ORDER = ("N", "CA", "C", "CB")
_SIGN_LABELS = {"L": 1, "D": -1, "+": 1, "-": -1, "positive": 1, "negative": -1}


@dataclasses.dataclass(frozen=True)
class ChiralCenter:
    """A stereocentre: the atom ``center`` and three of its neighbours.

    Attributes:
        center: 0-based index of the centre atom c.
        neighbors: indices (a, b, d) of three neighbours; the signed volume is
            V = (a − c)·((b − c) × (d − c)).
        reference_sign: sign of V in the reference structure (+1 or −1); :func:`chirality`
            reports +1 for samples with that handedness.
        name: a label, e.g. ``"ALA2:CA"``.
        handedness: label of the reference handedness, e.g. ``"L"`` (empty when unknown).
    """

    center: int
    neighbors: tuple[int, int, int]
    reference_sign: int = 1
    name: str = ""
    handedness: str = ""

    def __post_init__(self) -> None:
        if len(self.neighbors) != 3:
            raise ConfigError(f"a chiral centre needs exactly 3 neighbour indices, got {self.neighbors!r}")
        if self.reference_sign not in (1, -1):
            raise ConfigError(f"reference_sign must be +1 or -1, got {self.reference_sign!r}")
        idx = (self.center, *self.neighbors)
        if len(set(idx)) != 4 or min(idx) < 0:
            raise ConfigError(
                f"chiral centre {self.name or idx}: indices must be 4 distinct non-negative ints, got {idx}"
            )

    @property
    def indices(self) -> tuple[int, int, int, int]:
        """(center, a, b, d)."""
        return (self.center, *self.neighbors)


# --------------------------------------------------------------------------- geometry


def _check_x(x: Tensor, centers: Sequence[ChiralCenter]) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ShapeError(f"positions must have shape (batch, n_particles, 3), got {tuple(x.shape)}")
    top = max((max(c.indices) for c in centers), default=-1)
    if top >= x.shape[1]:
        raise ShapeError(
            f"chiral centre atom index {top} is out of range for {x.shape[1]} particles; "
            f"the centres belong to another system"
        )
    return x


def signed_volumes(x: Tensor, centers: Sequence[ChiralCenter]) -> Tensor:
    """V = (a − c)·((b − c) × (d − c)) per sample and centre, ``(batch, n_centers)`` in length³ units."""
    x = _check_x(x, centers)
    if not centers:
        return x.new_zeros(x.shape[0], 0)
    idx = torch.tensor([c.indices for c in centers], device=x.device)  # (m, 4)
    p = x[:, idx]  # (B, m, 4, 3)
    c = p[:, :, 0]
    a, b, d = p[:, :, 1] - c, p[:, :, 2] - c, p[:, :, 3] - c
    return (a * torch.linalg.cross(b, d, dim=-1)).sum(-1)


def _reference_signs(centers: Sequence[ChiralCenter], reference_signs: Tensor | Sequence[int] | None,
                     device: torch.device) -> Tensor:
    if reference_signs is None:
        return torch.ones(len(centers), dtype=torch.long, device=device)
    ref = torch.as_tensor(reference_signs, device=device).to(torch.long).reshape(-1)
    if ref.shape[0] != len(centers) or not bool(((ref == 1) | (ref == -1)).all()):
        raise ConfigError(
            f"reference_signs must hold one +1/-1 per chiral centre ({len(centers)}), got {ref.tolist()}"
        )
    return ref


def chirality(x: Tensor, centers: Sequence[ChiralCenter]) -> Tensor:
    """Handedness per sample and centre, ``(batch, n_centers)`` int64.

    +1: the handedness of the reference structure (``center.reference_sign``), −1: its mirror
    image, 0: planar (V = 0 exactly).
    """
    v = signed_volumes(x, centers)
    ref = torch.tensor([c.reference_sign for c in centers], dtype=torch.long, device=v.device)
    return torch.sign(v).to(torch.long) * ref


def wrong_handed_mask(x: Tensor, centers: Sequence[ChiralCenter],
                      reference_signs: Tensor | Sequence[int] | None = None) -> Tensor:
    """``(batch,)`` bool: samples whose every centre is inverted relative to ``reference_signs``.

    ``reference_signs``: the wanted handedness per centre in the units of :func:`chirality`
    (``None``: all +1, the reference structure; ``[-1, …]`` targets its mirror image).
    These samples are the enantiomer of the wanted stereoisomer; one reflection fixes them.
    """
    if not centers:
        return torch.zeros(_check_x(x, centers).shape[0], dtype=torch.bool)
    chi = chirality(x, centers)
    ref = _reference_signs(centers, reference_signs, chi.device)
    return (chi == -ref).all(dim=1)


def reflect_wrong_handed(x: Tensor, centers: Sequence[ChiralCenter],
                         reference_signs: Tensor | Sequence[int] | None = None) -> tuple[Tensor, int]:
    """Mirror every wrong-handed sample by inversion through its centre of mass.

    Args:
        x: ``(batch, n_particles, 3)`` positions.
        centers: the chiral centres.
        reference_signs: wanted handedness per centre (``None``: that of the reference structure).
    Returns:
        ``(x_fixed, n_reflected)``: the positions with every sample of :func:`wrong_handed_mask`
        replaced by 2x̄ − x (same shape and dtype; others unchanged) and how many were mirrored.
        Distances, energies and the centre of mass are unchanged; see the module docstring for the
        log-weights.
    """
    x = _check_x(x, centers)
    mask = wrong_handed_mask(x, centers, reference_signs).to(x.device)
    return mirror_where(x, mask), int(mask.sum())


def mirror_where(x: Tensor, mask: Tensor) -> Tensor:
    """``(batch, n, 3)``: the samples where ``mask`` ``(batch,)`` is set inverted through their centre
    of mass (2x̄ − x), the others unchanged."""
    return torch.where(mask[:, None, None], 2.0 * x.mean(dim=1, keepdim=True) - x, x)


def chirality_fractions(x: Tensor, centers: Sequence[ChiralCenter],
                        reference_signs: Tensor | Sequence[int] | None = None) -> dict[str, Any]:
    """Fractions of samples by handedness, for reports.

    Returns a dict with ``n`` (samples), ``reference`` (every centre as wanted), ``mirror`` (every
    centre inverted: the enantiomer), ``mixed`` (the rest: diastereomers or planar centres),
    ``per_center`` (fraction of samples with the wanted handedness at each centre) and
    ``centers`` (their names). Fractions are floats in [0, 1]; with no samples they are NaN.
    """
    x = _check_x(x, centers)
    n = int(x.shape[0])
    names = [c.name or f"atom{c.center}" for c in centers]
    if not centers:
        return {"n": n, "reference": 1.0 if n else math.nan, "mirror": 0.0 if n else math.nan,
                "mixed": 0.0 if n else math.nan, "per_center": [], "centers": []}
    if n == 0:
        return {"n": 0, "reference": math.nan, "mirror": math.nan, "mixed": math.nan,
                "per_center": [math.nan] * len(centers), "centers": names}
    chi = chirality(x, centers)
    ref = _reference_signs(centers, reference_signs, chi.device)
    good = chi == ref
    ok = good.all(dim=1)
    bad = (chi == -ref).all(dim=1)
    return {
        "n": n,
        "reference": float(ok.double().mean()),
        "mirror": float(bad.double().mean()),
        "mixed": float((~ok & ~bad).double().mean()),
        "per_center": good.double().mean(dim=0).tolist(),
        "centers": names,
    }


def _right_and_mirror(logw: Tensor, x: Tensor, centers: Sequence[ChiralCenter],
                      reference_signs: Tensor | Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """Checked shapes, then ``(right, mirror)`` boolean ``(batch,)`` masks on ``logw``'s device:
    every centre as wanted / every centre inverted (both all-False without centres)."""
    x = _check_x(x, centers)
    if logw.shape != (x.shape[0],):
        raise ShapeError(f"logw must have shape ({x.shape[0]},), got {tuple(logw.shape)}")
    if not centers:
        none = torch.zeros(x.shape[0], dtype=torch.bool, device=logw.device)
        return none, none
    chi = chirality(x, centers).to(logw.device)
    ref = _reference_signs(centers, reference_signs, chi.device)
    return (chi == ref).all(dim=1), (chi == -ref).all(dim=1)


def enantiomer_log_weights(logw: Tensor, x: Tensor, centers: Sequence[ChiralCenter],
                           reference_signs: Tensor | Sequence[int] | None = None) -> Tensor:
    """Log-weights for the single-stereoisomer target after :func:`reflect_wrong_handed`.

    Args:
        logw: ``(batch,)`` log-weights −E(x)/kT − log q(x) of the samples before folding (equal
            after folding for a reflection-invariant q and energy).
        x: ``(batch, n_particles, 3)`` the folded samples.
    Returns:
        ``(batch,)``: ``logw − log 2`` for samples with the wanted handedness at every centre
        (the folded density is 2q there) and −inf for the others (outside the target's support).
        Self-normalized weights and ESS are those of ``logw`` over the kept samples;
        ``logsumexp(result) − log n`` estimates log Z of the single stereoisomer (= log Z − log 2).
    """
    ok, _ = _right_and_mirror(logw, x, centers, reference_signs)
    if not centers:
        return logw
    return torch.where(ok, logw - math.log(2.0), torch.full_like(logw, -math.inf))


def drop_wrong_handed_log_weights(logw: Tensor, x: Tensor, centers: Sequence[ChiralCenter],
                                  reference_signs: Tensor | Sequence[int] | None = None) -> Tensor:
    """Log-weights against the folded target for samples of a chiral (not reflection-invariant) model.

    Args:
        logw: ``(batch,)`` log-weights −E(x)/kT − log q(x) (or any log π − log q).
        x: ``(batch, n_particles, 3)`` the samples (not folded).
    Returns:
        ``(batch,)``: ``logw + log 2`` for samples with the wanted handedness at every centre,
        −inf for mirror images (every centre inverted), ``logw`` for the rest (diastereomers,
        which folding leaves alone too). The target and log Z are those of a folded E(3) model
        (module docstring); wrong-handed samples count with weight 0 in the ESS.
    """
    right, mirror = _right_and_mirror(logw, x, centers, reference_signs)
    if not centers:
        return logw
    out = torch.where(right, logw + math.log(2.0), logw)
    return torch.where(mirror, torch.full_like(logw, -math.inf), out)


# --------------------------------------------------------------------------- detection


def chiral_centers_from_topology(topology: Any, reference: Any = None,
                                 elements: Sequence[str] = ("C",)) -> list[ChiralCenter]:
    """Stereocentres found from the bonds of an mdtraj topology.

    A centre is an atom of one of ``elements`` with exactly four bonded neighbours that head four
    different branches (Weisfeiler–Lehman colours of the bond graph); for an amino acid this is the
    Cα with N, C, CB and HA. The neighbours used for the signed volume are the three of highest
    priority (atomic number, then the atomic numbers of their own neighbours, then branch colour),
    i.e. the lowest (HA) is dropped; for an amino acid they come out as (N, C, CB), so V > 0 is L.

    Args:
        topology: ``mdtraj.Topology`` with bonds (none found without bonds).
        reference: optional reference positions ``(n_atoms, 3)`` (array or tensor); each centre's
            ``reference_sign`` is then the sign of V there, else +1 (V > 0 counts as +1).
        elements: element symbols that may be centres.
    Returns:
        the centres in atom order.
    """
    atoms = list(topology.atoms)
    nbrs = bond_graph(topology)
    z = [atomic_number(a) for a in atoms]
    colours = wl_colours(z, nbrs)
    ref = None
    if reference is not None:
        ref = np.asarray(reference.detach().cpu() if isinstance(reference, Tensor) else reference, dtype=np.float64)
        ref = ref.reshape(-1, 3)
        if ref.shape[0] != len(atoms):
            raise ShapeError(f"reference positions have {ref.shape[0]} atoms, the topology {len(atoms)}")
    wanted = {e.upper() for e in elements}
    centers: list[ChiralCenter] = []
    for i, atom in enumerate(atoms):
        el = getattr(atom, "element", None)
        if el is None or str(el.symbol).upper() not in wanted or len(nbrs[i]) != 4:
            continue
        if len({colours[j] for j in nbrs[i]}) != 4:
            continue

        def priority(j: int, i: int = i) -> tuple:
            sphere = tuple(sorted((z[k] for k in nbrs[j] if k != i), reverse=True))
            return (z[j], sphere, colours[j], -j)

        a, b, d = sorted(nbrs[i], key=priority, reverse=True)[:3]
        names = (atoms[a].name, atom.name, atoms[b].name, atoms[d].name)
        sign, label = 1, ""
        if ref is not None:
            c = ref[i]
            v = float(np.dot(ref[a] - c, np.cross(ref[b] - c, ref[d] - c)))
            if v == 0.0:
                raise ConfigError(f"chiral centre {atom} is planar in the reference structure; check the positions")
            sign = 1 if v > 0 else -1
            label = ("L" if sign > 0 else "D") if names == _AMINO_ACID_ORDER else ("+" if sign > 0 else "-")
        centers.append(ChiralCenter(center=i, neighbors=(a, b, d), reference_sign=sign,
                                    name=f"{atom.residue.name}{atom.residue.resSeq}:{atom.name}", handedness=label))
    return centers


def chiral_centers_from_card(card: dict, topology: Any = None) -> list[ChiralCenter]:
    """Stereocentres from a card's ``chiral_centers`` list (empty when the key is absent).

    Each entry is a table::

        chiral_centers = [{ residue = "ALA", atoms = ["N", "CA", "C", "CB"], indices = [6, 8, 14, 10],
                            handedness = "L" }]

    ``atoms`` (names, resolved in ``topology`` within ``residue`` and optionally ``resid``) and/or
    ``indices`` (0-based) list four atoms (a, c, b, d) with the centre **second**, as in an improper
    dihedral; the signed volume is (a − c)·((b − c) × (d − c)). ``handedness`` is the reference
    handedness: ``"L"``/``"D"`` for atoms (N, CA, C, CB) (L ⟺ V > 0), or ``"+"``/``"-"`` for the sign
    of V in the listed order. When both names and indices are given they must agree.
    """
    entries = card.get("chiral_centers")
    if entries is None:
        return []
    where = f"card {card.get('name', '')!r} chiral_centers"
    if not isinstance(entries, list):
        raise ConfigError(
            f"{where} must be a list of tables like {{ atoms = [\"N\", \"CA\", \"C\", \"CB\"], handedness = \"L\" }}"
        )
    out: list[ChiralCenter] = []
    for k, e in enumerate(entries):
        w = f"{where}[{k}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{w} must be a table with atoms/indices and handedness, got {e!r}")
        names, indices = e.get("atoms"), e.get("indices")
        residue, resid = e.get("residue"), e.get("resid")
        if names is not None and (not isinstance(names, list) or len(names) != 4):
            raise ConfigError(
                f"{w}.atoms must list 4 atom names (neighbour, centre, neighbour, neighbour), got {names!r}"
            )
        if indices is not None and (not isinstance(indices, list) or len(indices) != 4
                                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices)):
            raise ConfigError(f"{w}.indices must list 4 integer atom indices (centre second), got {indices!r}")
        if names is None and indices is None:
            raise ConfigError(f"{w} needs atoms = [names] or indices = [4 ints]")
        if names is not None and topology is not None:
            resolved = [find_atom(topology, str(nm), residue, resid, w) for nm in names]
            if indices is not None and list(indices) != resolved:
                raise ConfigError(f"{w}: atoms {names} are indices {resolved} in the topology, but "
                                  f"indices = {indices}; fix one of them")
            indices = resolved
        if indices is None:
            raise ConfigError(f"{w}: atom names need a topology to resolve them; give indices = [4 ints] as well")
        hand = e.get("handedness")
        if hand is None:
            raise ConfigError(f"{w} needs handedness = \"L\" | \"D\" | \"+\" | \"-\" (the reference handedness)")
        if isinstance(hand, int) and not isinstance(hand, bool) and hand in (1, -1):
            sign, label = int(hand), ("+" if hand > 0 else "-")
        elif isinstance(hand, str) and hand in _SIGN_LABELS:
            if hand in ("L", "D") and (names is None or tuple(names) != _AMINO_ACID_ORDER):
                raise ConfigError(f"{w}: handedness {hand!r} needs atoms = [\"N\", \"CA\", \"C\", \"CB\"]; "
                                  f"otherwise give \"+\" or \"-\" (the sign of the signed volume)")
            sign, label = _SIGN_LABELS[hand], hand
        else:
            raise ConfigError(f"{w}: handedness must be \"L\", \"D\", \"+\" or \"-\", got {hand!r}")
        a, c, b, d = (int(i) for i in indices)
        label_name = f"{residue}:{names[1]}" if residue and names else (names[1] if names else f"atom{c}")
        out.append(ChiralCenter(center=c, neighbors=(a, b, d), reference_sign=sign, name=label_name, handedness=label))
    return out


def chiral_centers_for_system(system: Any) -> list[ChiralCenter]:
    """The stereocentres of a :class:`~molsample.systems.cards.System`.

    The card's ``chiral_centers`` when present; else detection from the topology's bonds with the
    system's structure (``system.energy.positions``, when it has one) as the reference handedness;
    else none (atomic clusters, toys).
    """
    card = getattr(system, "card", None) or {}
    topology = getattr(system, "topology", None)
    if "chiral_centers" in card:
        return chiral_centers_from_card(card, topology)
    if topology is None:
        return []
    return chiral_centers_from_topology(topology, reference=getattr(system.energy, "positions", None))
