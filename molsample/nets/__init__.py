"""Velocity networks b(t, x) for ``x: (batch, n_particles, dim)``.

Every net has ``forward(t, x)`` (``t`` a float, 0-d or ``(batch,)`` tensor) returning a velocity
of the shape of ``x``, and a ``spec`` dict (constructor arguments + ``"name"``) such that
``build_net(net.spec)`` rebuilds it. :func:`save_model` / :func:`load_model` store a net with its
weights and metadata in one file.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from molsample.errors import ConfigError, MissingFileError, RunFileError
from molsample.io.atomic import save_torch_atomic
from molsample.nets.egnn import EGNN
from molsample.nets.mlp import MLPVelocity

__all__ = ["EGNN", "MLPVelocity", "NETS", "NetCapabilities", "build_net", "capabilities", "default_net_spec",
           "net_class", "save_model", "load_model"]

#: spec name → "module:Class" (imported on first use, so e3nn loads only when asked for)
NETS: dict[str, str] = {
    "egnn": "molsample.nets.egnn:EGNN",
    "mlp": "molsample.nets.mlp:MLPVelocity",
    "affine": "molsample.nets.affine:AffineVelocity",
    "e3nn": "molsample.nets.e3nn_net:E3NNVelocity",
    "internal-mlp": "molsample.nets.internal_mlp:InternalMLP",
}


def net_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` in :data:`NETS` (imported on first use).

    Raises:
        ConfigError: an unknown name.
    """
    target = NETS.get(name)
    if target is None:
        raise ConfigError(f"unknown net '{name}'; choose one of {', '.join(NETS)}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass(frozen=True)
class NetCapabilities:
    """What a velocity net guarantees, as its class declares it (each class docstring says why).

    Attributes:
        reflection_invariant: the field commutes with reflections, so the flow of a
            reflection-invariant base has a reflection-invariant density (mirroring a sample keeps
            its log q valid).
        takes_atom_types: the net takes one type per particle (``atom_types``).
        keeps_centre_of_mass: the velocity has zero mean over particles, so samples stay on the
            centre-of-mass-free subspace of a CoM-free base.
    """

    reflection_invariant: bool
    takes_atom_types: bool
    keeps_centre_of_mass: bool


def capabilities(field: nn.Module | type) -> NetCapabilities:
    """The declared capabilities of a net, a net class (:func:`net_class`) or a net wrapped in
    :class:`~molsample.nets.wrapped.WrappedVelocity` subclasses (length scale, endpoint) or
    DistributedDataParallel: the innermost net's, since the wrappers keep every symmetry.
    Undeclared capabilities count as absent."""
    from molsample.nets.wrapped import WrappedVelocity

    inner = field
    while True:
        if isinstance(inner, WrappedVelocity):
            inner = inner.net
        elif isinstance(inner, nn.Module) and type(inner).__name__ == "DistributedDataParallel":
            inner = inner.module
        else:
            break
    return NetCapabilities(**{f.name: bool(getattr(inner, f.name, False)) for f in dataclasses.fields(NetCapabilities)})


def build_net(spec: dict) -> nn.Module:
    """Build a velocity net from its ``spec`` (``{"name": "egnn" | "mlp" | …, **constructor args}``).

    A ``"length_scale"`` σ ≠ 1 in the spec wraps the net in :class:`~molsample.nets.scaled.ScaledVelocity`
    (the net sees x / σ); ``"parametrisation": "endpoint"`` wraps the result in
    :class:`~molsample.nets.endpoint.EndpointVelocity` (the net predicts the displacement to x1).

    Raises:
        ConfigError: an unknown name or an argument the net does not take.
    """
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"a net spec must be a dict with a 'name' key, got {spec!r}")
    kwargs = dict(spec)
    name = str(kwargs.pop("name")).lower()
    length_scale = kwargs.pop("length_scale", 1.0)
    parametrisation = kwargs.pop("parametrisation", "velocity")
    from molsample.nets.endpoint import PARAMETRISATIONS, EndpointVelocity

    if parametrisation not in PARAMETRISATIONS:
        raise ConfigError(f"unknown parametrisation {parametrisation!r}; choose one of {', '.join(PARAMETRISATIONS)}")
    cls = net_class(name)
    try:
        net = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for net '{name}': {exc}; see help({cls.__name__})") from exc
    if length_scale != 1.0:
        from molsample.nets.scaled import ScaledVelocity

        net = ScaledVelocity(net, length_scale)
    if parametrisation == "endpoint":
        net = EndpointVelocity(net)
    return net


def default_net_spec(system: Any, name: str | None = None, *, hidden: int | None = None,
                     n_layers: int | None = None, bond_edges: bool = False,
                     parametrisation: str = "velocity") -> dict:
    """The spec of the velocity net for ``system``.

    ``name`` None picks an EGNN (hidden 64, 4 layers) for particle systems (n_particles > 1) and the
    tutorial MLP for toys; another name gets that net's defaults. For molecules (a topology with
    bonds) the EGNN and e3nn nets get one atom type per atom, since a molecule's atoms are not
    interchangeable. With ``bond_edges`` the EGNN also gets the molecule's bonds as edge features
    (:class:`~molsample.nets.egnn.EGNN`). The system's ``length_scale`` ≠ 1 goes into the spec (see
    :mod:`molsample.nets.scaled`), and so does ``parametrisation`` ``"endpoint"`` (see
    :mod:`molsample.nets.endpoint`; ``"velocity"``, the default, leaves the spec as it was).

    Raises:
        ConfigError: ``bond_edges`` for a net other than egnn, or a system without bonds.
    """
    n, d = system.event_shape
    if n > 1:
        spec: dict = {"name": "egnn", "n_particles": int(n), "dim": int(d), "hidden": 64, "n_layers": 4}
    else:
        spec = {"name": "mlp", "n_particles": 1, "dim": int(d), "hidden": 128, "n_freqs": 8, "n_layers": 3}
    if name is not None and name.lower() != spec["name"]:
        spec = {"name": name.lower(), "n_particles": int(n), "dim": int(d)}
    if hidden is not None:
        spec["hidden"] = int(hidden)
    if n_layers is not None:
        spec["n_layers"] = int(n_layers)
    topology = getattr(system, "topology", None)
    if topology is not None and topology.n_bonds > 0 and capabilities(net_class(spec["name"])).takes_atom_types:
        from molsample.molecules.topology import atom_types_from_topology

        spec["atom_types"] = atom_types_from_topology(topology, by="index")
    if bond_edges:
        if spec["name"] != "egnn" or topology is None or topology.n_bonds == 0:
            from molsample.errors import ConfigError

            raise ConfigError(f"net.bond_edges needs the egnn net and a molecule with bonds; {system.name} has "
                              f"net {spec['name']!r} and {0 if topology is None else topology.n_bonds} bonds: "
                              "set bond_edges = false")
        spec["bonds"] = [[int(b[0].index), int(b[1].index)] for b in topology.bonds]
    length_scale = float(getattr(system, "length_scale", 1.0))
    if length_scale != 1.0:
        spec["length_scale"] = length_scale
    if parametrisation != "velocity":
        spec["parametrisation"] = parametrisation
    return spec


def save_model(file: str | os.PathLike, net: nn.Module, /, **meta: Any) -> Path:
    """Write ``{"spec": net.spec, "state_dict": ..., **meta}`` to ``file`` atomically (temp + rename)."""
    path = Path(file)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    payload = {"spec": dict(net.spec), "state_dict": state, **meta}
    save_torch_atomic(payload, path)
    return path


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a file written by :func:`save_model`: ``(net, payload)`` with the net in eval mode.

    Raises:
        MissingFileError: no such file.
        RunFileError: the file is not a molsample model (no ``spec``/``state_dict``).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model file {path} not found; check the path (a run's tilted model is "
                               "RUN/model.pt, written by `molsample tilt`; a pretrained one by `molsample pretrain`)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a foreign/broken file
        raise RunFileError(f"cannot read model file {path}: {exc}") from exc
    if not isinstance(payload, dict) or "spec" not in payload or "state_dict" not in payload:
        raise RunFileError(f"{path} is not a molsample model file (needs 'spec' and 'state_dict')")
    net = build_net(payload["spec"])
    net.load_state_dict(payload["state_dict"])
    net.to(map_location)
    net.eval()
    return net, payload
