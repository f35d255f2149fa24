r"""Z-matrices: the order in which atoms are placed from internal coordinates, and their references.

A :class:`ZMatrix` has one row per atom, in placement order: ``(atom, bond_ref, angle_ref,
torsion_ref)`` (0-based atom indices). Row k ≥ 3 places ``atom`` at the bond length
|atom − bond_ref|, the angle atom–bond_ref–angle_ref and the dihedral
atom–bond_ref–angle_ref–torsion_ref; rows 0, 1, 2 lack the references marked ``-1``::

    (a0, -1, -1, -1)        # the origin
    (a1, b,  -1, -1)        # a bond length
    (a2, b,  c,  -1)        # a bond length and an angle

:func:`build_zmatrix` chooses the rows from a bond graph: a breadth-first walk over the heavy atoms
from one end of the longest heavy-atom path (branches that lead further first), each hydrogen right
after its heavy atom (those of the first two heavy atoms right after the third, so that the first
three rows are a bonded heavy-atom chain). Each atom's bond_ref is its parent in the walk, its
angle_ref a placed neighbour of the parent (the parent's own parent when it has one) and its
torsion_ref a placed neighbour of the angle_ref — or, when the parent already has another placed
child (a sibling: methyl hydrogens, the substituents of CA), that sibling. The dihedral relative to a
sibling is nearly constant (about ±120° at a tetrahedral centre, 180° at a planar one) instead of
following a rotor. A ring's closing bonds are not in the walk's tree; geometry constrains them.

A card can override the choice with ``[internal] zmatrix = [[atom, b, a, t], ...]``
(:func:`zmatrix_for_system`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from molsample.errors import ConfigError

__all__ = ["ZMatrix", "build_zmatrix", "zmatrix_for_system"]

_REF_NAMES = ("bond_ref", "angle_ref", "torsion_ref")


@dataclass(frozen=True)
class ZMatrix:
    """Rows ``(atom, bond_ref, angle_ref, torsion_ref)`` in placement order; ``-1`` for missing references."""

    rows: tuple[tuple[int, int, int, int], ...]

    @property
    def n_atoms(self) -> int:
        """Number of atoms (= rows)."""
        return len(self.rows)

    def validate(self, n_atoms: int) -> ZMatrix:
        """Check that the rows place atoms ``0 .. n_atoms-1`` once each with earlier, distinct references.

        Returns ``self``; raises :class:`ConfigError` naming the first bad row and the fix.
        """
        if n_atoms < 3:
            raise ConfigError(f"a Z-matrix needs at least 3 atoms, got n_atoms={n_atoms}; use Cartesian coordinates")
        first_row: dict[int, int] = {}
        for k, row in enumerate(self.rows):
            if len(row) != 4:
                raise ConfigError(f"Z-matrix row {k} is {list(row)}; each row must be [atom, bond_ref, angle_ref, "
                                  f"torsion_ref] with -1 for missing references")
            atom, refs = int(row[0]), [int(r) for r in row[1:]]
            if not 0 <= atom < n_atoms:
                raise ConfigError(f"Z-matrix row {k} places atom {atom}, outside [0, {n_atoms}); "
                                  f"use 0-based atom indices")
            if atom in first_row:
                raise ConfigError(f"Z-matrix row {k} places atom {atom} again (first in row {first_row[atom]}); "
                                  f"each atom must appear in exactly one row")
            need = min(k, 3)
            for j, (name, ref) in enumerate(zip(_REF_NAMES, refs)):
                if j >= need and ref != -1:
                    raise ConfigError(f"Z-matrix row {k} (atom {atom}) has {name} {ref}, but row {k} takes only "
                                      f"{need} reference(s); set it to -1")
                if j < need and ref not in first_row:
                    raise ConfigError(f"Z-matrix row {k} (atom {atom}): {name} {ref} is not an atom placed in an "
                                      f"earlier row; reorder the rows so that atom {ref} comes first")
            used = [atom] + refs[:need]
            if len(set(used)) != len(used):
                raise ConfigError(f"Z-matrix row {k} is {list(row)}: the atom and its references must be distinct "
                                  f"atoms; pick other references")
            first_row[atom] = k
        missing = sorted(set(range(n_atoms)) - set(first_row))
        if missing:
            raise ConfigError(f"the Z-matrix has {len(self.rows)} rows for {n_atoms} atoms: atom(s) "
                              f"{', '.join(map(str, missing[:10]))} missing; add a row for each")
        return self

    def as_lists(self) -> list[list[int]]:
        """The rows as lists of ints (a card's ``[internal] zmatrix``)."""
        return [list(r) for r in self.rows]

    @classmethod
    def from_lists(cls, rows: Any) -> ZMatrix:
        """A ZMatrix from ``[[atom, bond_ref, angle_ref, torsion_ref], ...]`` (not yet validated)."""
        try:
            out = tuple(tuple(int(v) for v in r) for r in rows)
        except (TypeError, ValueError):
            raise ConfigError(f"a Z-matrix must be a list of [atom, bond_ref, angle_ref, torsion_ref] integer rows, "
                              f"got {rows!r}") from None
        for k, r in enumerate(out):
            if len(r) != 4:
                raise ConfigError(f"Z-matrix row {k} is {list(r)}; write each row as [atom, bond_ref, angle_ref, "
                                  f"torsion_ref] with -1 for missing references")
        return cls(out)  # type: ignore[arg-type]

    def describe(self, atom_names: Sequence[str] | None = None) -> str:
        """One line per row: ``row  atom  bond  angle  torsion`` with names when given."""
        def name(i: int) -> str:
            if i < 0:
                return "-"
            return f"{atom_names[i]}({i})" if atom_names is not None else str(i)
        w = max([9] + [len(name(i)) + 1 for row in self.rows for i in row])
        lines = [f"{'row':>3}  " + " ".join(f"{h:<{w}}" for h in ("atom", "bond", "angle", "torsion")).rstrip()]
        for k, row in enumerate(self.rows):
            lines.append(f"{k:>3}  " + " ".join(f"{name(i):<{w}}" for i in row).rstrip())
        return "\n".join(lines)


# --------------------------------------------------------------------------- bond graph

def _adjacency(n_atoms: int, bonds: Any, where: str) -> list[set[int]]:
    adj: list[set[int]] = [set() for _ in range(n_atoms)]
    for b in bonds:
        i, j = int(b[0]), int(b[1])
        if i == j or not (0 <= i < n_atoms and 0 <= j < n_atoms):
            raise ConfigError(f"{where}: bond ({i}, {j}) is not a pair of distinct atom indices in [0, {n_atoms})")
        adj[i].add(j)
        adj[j].add(i)
    return adj


def _bfs(root: int, adj: list[set[int]], allowed: set[int]) -> tuple[list[int], dict[int, int]]:
    """Breadth-first order over ``allowed`` from ``root`` (neighbours by index) and the parents."""
    order, parent, queue = [root], {root: -1}, deque([root])
    while queue:
        v = queue.popleft()
        for w in sorted(adj[v] & allowed):
            if w not in parent:
                parent[w] = v
                order.append(w)
                queue.append(w)
    return order, parent


def _components(n_atoms: int, adj: list[set[int]]) -> list[list[int]]:
    seen: set[int] = set()
    comps = []
    everything = set(range(n_atoms))
    for i in range(n_atoms):
        if i not in seen:
            order, _ = _bfs(i, adj, everything)
            seen.update(order)
            comps.append(order)
    return comps


def _is_hydrogen(element: Any) -> bool:
    symbol = getattr(element, "symbol", element)
    return str(symbol).strip().upper() in ("H", "D")


def _default_root(adj: list[set[int]], heavy: set[int]) -> int:
    """One end of the longest heavy-atom path (two breadth-first sweeps; exact on trees)."""
    def farthest(start: int) -> int:
        order, parent = _bfs(start, adj, heavy)
        depth = {start: 0}
        for v in order[1:]:
            depth[v] = depth[parent[v]] + 1
        far = max(depth.values())
        return min(v for v in order if depth[v] == far)
    a = farthest(min(heavy))
    return min(a, farthest(a))


def _level_order(root: int, adj: list[set[int]], allowed: set[int]) -> tuple[list[int], dict[int, int]]:
    """Breadth-first order of the BFS tree from ``root`` with each node's children sorted by
    (−height of their subtree, index): the branch that leads furthest comes first."""
    order, parent = _bfs(root, adj, allowed)
    children: dict[int, list[int]] = {v: [] for v in order}
    height = {v: 0 for v in order}
    for v in reversed(order[1:]):
        children[parent[v]].append(v)
        height[parent[v]] = max(height[parent[v]], height[v] + 1)
    out, queue = [], deque([root])
    while queue:
        v = queue.popleft()
        out.append(v)
        queue.extend(sorted(children[v], key=lambda w: (-height[w], w)))
    return out, parent


def _placement(n_atoms: int, adj: list[set[int]], hydrogen: list[bool], root: int | None) -> tuple[list[int], dict]:
    """Placement order and parents: heavy atoms breadth-first, each atom's hydrogens right after it."""
    heavy = {i for i in range(n_atoms) if not hydrogen[i]}
    every_h_on_heavy = all(adj[i] & heavy for i in range(n_atoms) if hydrogen[i])
    heavy_connected = bool(heavy) and len(_bfs(min(heavy), adj, heavy)[0]) == len(heavy)
    if len(heavy) < 3 or not (every_h_on_heavy and heavy_connected) or (root is not None and root not in heavy):
        start = root if root is not None else (_default_root(adj, heavy) if heavy_connected else 0)
        return _level_order(start, adj, set(range(n_atoms)))
    start = root if root is not None else _default_root(adj, heavy)
    heavy_order, parent = _level_order(start, adj, heavy)
    order: list[int] = []
    deferred: list[int] = []
    for k, h in enumerate(heavy_order):
        order.append(h)
        hs = sorted(j for j in adj[h] if hydrogen[j] and j not in parent)
        for j in hs:
            parent[j] = h
        deferred += hs
        if k >= 2 or k == len(heavy_order) - 1:
            order += deferred
            deferred = []
    return order, parent


def _references(order: list[int], parent: dict[int, int], adj: list[set[int]], hydrogen: list[bool]) -> ZMatrix:
    """Rows from a placement order: bond_ref = parent, angle_ref and torsion_ref as in the module docstring."""
    rank = {a: k for k, a in enumerate(order)}

    def placed(candidates: set[int], before: int, prefer: int = -1) -> list[int]:
        """Candidates placed before row ``before``: ``prefer`` first, then heavy atoms, then by row."""
        got = [c for c in candidates if rank[c] < before]
        return sorted(got, key=lambda c: (c != prefer, hydrogen[c], rank[c]))

    rows = []
    for k, atom in enumerate(order):
        if k == 0:
            rows.append((atom, -1, -1, -1))
            continue
        p = parent[atom]
        if k == 1:
            rows.append((atom, p, -1, -1))
            continue
        a = placed(adj[p] - {atom}, k, prefer=parent.get(p, -1))[0]
        if k == 2:
            rows.append((atom, p, a, -1))
            continue
        siblings = placed(adj[p] - {atom, a}, k)
        t = siblings[0] if siblings else placed(adj[a] - {atom, p}, k, prefer=parent.get(a, -1))[0]
        rows.append((atom, p, a, t))
    return ZMatrix(tuple(rows))


def build_zmatrix(n_atoms: int, bonds: Any, elements: Sequence[Any] | None = None, *, root: int | None = None,
                  name: str | None = None) -> ZMatrix:
    """A Z-matrix chosen from the bond graph (module docstring).

    Args:
        n_atoms: number of atoms n.
        bonds: pairs of 0-based atom indices; the graph must be connected (cycles are fine).
        elements: n element symbols (or objects with ``.symbol``); hydrogens are ``"H"``/``"D"``.
            ``None`` treats every atom as heavy.
        root: the atom of row 0 (default: one end of the longest heavy-atom path).
        name: the system's name, for error messages.
    """
    where = f"system {name!r}" if name else "the molecule"
    if n_atoms < 3:
        raise ConfigError(f"internal coordinates need at least 3 atoms; {where} has {n_atoms}: "
                          f"use coordinates = \"cartesian\"")
    bonds = list(bonds) if bonds is not None else []
    if not bonds:
        raise ConfigError(f"internal coordinates need a bond graph; {where} has none: use coordinates = \"cartesian\"")
    adj = _adjacency(n_atoms, bonds, where)
    comps = _components(n_atoms, adj)
    if len(comps) > 1:
        sizes = sorted((len(c) for c in comps), reverse=True)
        raise ConfigError(f"internal coordinates need a connected bond graph; {where} has {len(comps)} components of "
                          f"{', '.join(map(str, sizes))} atoms: add the missing bonds or "
                          f"use coordinates = \"cartesian\"")
    if elements is not None and len(elements) != n_atoms:
        raise ConfigError(f"{where}: {len(elements)} elements for {n_atoms} atoms; give one element per atom")
    if root is not None and not 0 <= int(root) < n_atoms:
        raise ConfigError(f"Z-matrix root {root} is not an atom index in [0, {n_atoms}); pick an atom of {where}")
    hydrogen = [_is_hydrogen(e) for e in elements] if elements is not None else [False] * n_atoms
    order, parent = _placement(n_atoms, adj, hydrogen, None if root is None else int(root))
    return _references(order, parent, adj, hydrogen).validate(n_atoms)


def zmatrix_for_system(system: Any) -> ZMatrix:
    """The Z-matrix of a :class:`~molsample.systems.cards.System`: the card's ``[internal] zmatrix`` when given,
    else :func:`build_zmatrix` over ``system.topology``'s bonds and elements; validated."""
    name = getattr(system, "name", "?")
    n_atoms = int(system.n_particles)
    card = getattr(system, "card", None) or {}
    table = card.get("internal", {}) if isinstance(card, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"card key internal must be a table like {{ zmatrix = [[0, -1, -1, -1], ...] }}, "
                          f"got {table!r}")
    if "zmatrix" in table:
        return ZMatrix.from_lists(table["zmatrix"]).validate(n_atoms)
    topology = getattr(system, "topology", None)
    if topology is None:
        raise ConfigError(f"internal coordinates need a bond graph; system {name!r} has none: "
                          f"use coordinates = \"cartesian\"")
    bonds = [(b[0].index, b[1].index) for b in topology.bonds]
    elements = [a.element.symbol if a.element is not None else "X" for a in topology.atoms]
    return build_zmatrix(n_atoms, bonds, elements, name=name)
