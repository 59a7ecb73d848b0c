r"""Laguerre (power) cells of weighted points in 2-D and their exact masses under an isotropic Gaussian:
the reference semi-discrete OT solver (damped Newton, Kitagawa–Mérigot–Thibert) (docs/theory.md §9).

The cell of point j for dual weights g is the convex polygon

.. math:: L_j(g) = \{z : |z - y_j|^2 - g_j \le |z - y_k|^2 - g_k\ \forall k\}
   = \{z : 2 z\cdot(y_k - y_j) \le |y_k|^2 - |y_j|^2 - g_k + g_j\ \forall k\},

built by clipping a square box with the half-planes of its actual neighbours (the most violated half-plane
first, until every remaining one holds). The box is the only truncation: it reaches ``BOX_RADIUS`` standard
deviations beyond the farthest point, where the Gaussian mass outside is below 1e-31.

Masses are closed form (no sampling). In coordinates standardised by N(c, σ²I), a polygon's mass is the
signed sum over its edges (a, b) of the mass of the triangle (0, a, b): with θ the angle swept from a to b,
h the distance from 0 to the edge's line and s the coordinate along it,

.. math:: \mu(0, a, b) = \mathrm{sign}(\Delta\theta)\Big(\frac{|\Delta\theta|}{2\pi}
   - \big|T(h, s_b/h) - T(h, s_a/h)\big|\Big),

T Owen's function, since :math:`\frac1{2\pi}\int e^{-r(\theta)^2/2}d\theta = T(h, \tan\theta)` along a line.
The Gaussian measure of a facet is :math:`\varphi(h)(\Phi(s_b) - \Phi(s_a))/\sigma`, and the Jacobian of the
masses is the weighted graph Laplacian
:math:`\partial\mu(L_j)/\partial g_k = -\mu_{jk}/(2|y_j - y_k|)` (k ≠ j: raising g_k moves the facet jk into
cell j by :math:`\delta g_k/2|y_j - y_k|`), :math:`\partial\mu(L_j)/\partial g_j = -\sum_{k\ne j}\partial\mu(L_j)/
\partial g_k`. Newton solves :math:`J\delta = w - \mu(g)` (J + 11ᵀ/m removes the constant null direction) and
halves δ until every cell keeps half the smallest of its mass and weight and the error falls by (1 − θ/2):
the damping under which Kitagawa, Mérigot and Thibert prove global convergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, owens_t

#: half-width of the box beyond the farthest point, in standard deviations (mass outside < 1e-31)
BOX_RADIUS = 12.0
#: most Newton iterations and step halvings
NEWTON_ITERATIONS = 60
DAMPING_HALVINGS = 30


@dataclass(frozen=True)
class LaguerreCells:
    """The cells of one dual-weight vector: per point a polygon (k, 2) in counter-clockwise order (empty
    (0, 2) when the point has no cell) and, per polygon edge, the neighbour whose half-plane made it (−1 for
    the box)."""

    polygons: list[np.ndarray]
    neighbours: list[np.ndarray]


def laguerre_cells(points: np.ndarray, dual: np.ndarray, centre: np.ndarray, std: float) -> LaguerreCells:
    """The Laguerre cells of ``points`` (m, 2) with dual weights ``dual`` (m,), clipped to the box around
    ``centre`` that reaches ``BOX_RADIUS`` · ``std`` beyond the farthest point."""
    half = BOX_RADIUS * std + float(np.abs(points - centre).max())
    box = centre + half * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    lifted = (points**2).sum(1) - dual
    polygons, neighbours = [], []
    for j in range(len(points)):
        normals = 2 * (points - points[j])  # half-plane k: normals_k · z <= offsets_k
        offsets = lifted - lifted[j]
        polygon, edges = box, np.full(4, -1)
        active = np.ones(len(points), dtype=bool)
        active[j] = False
        while len(polygon):
            violation = (polygon @ normals.T).max(0) - offsets
            violation[~active] = -np.inf
            k = int(violation.argmax())
            if violation[k] <= 0:
                break
            polygon, edges = _clip(polygon, edges, normals[k], offsets[k], k)
            active[k] = False
        polygons.append(polygon)
        neighbours.append(edges)
    return LaguerreCells(polygons, neighbours)


def _clip(polygon: np.ndarray, edges: np.ndarray, normal: np.ndarray, offset: float, label: int):
    """Sutherland–Hodgman clip of a convex polygon (edge i runs from vertex i to i + 1) by normal·z <= offset;
    the new edge along the line carries ``label``."""
    side = polygon @ normal - offset
    inside = side <= 0
    out_vertices, out_edges = [], []
    count = len(polygon)
    for i in range(count):
        nxt = (i + 1) % count
        if inside[i]:
            out_vertices.append(polygon[i])
            out_edges.append(edges[i])
        if inside[i] != inside[nxt]:
            fraction = side[i] / (side[i] - side[nxt])
            out_vertices.append(polygon[i] + fraction * (polygon[nxt] - polygon[i]))
            out_edges.append(edges[i] if not inside[i] else label)
    if len(out_vertices) < 3:
        return np.empty((0, 2)), np.empty(0, dtype=int)
    return np.array(out_vertices), np.array(out_edges)


def _edge_geometry(start: np.ndarray, end: np.ndarray):
    """Distance h of each edge's line from the origin and the coordinates s of its ends along it (a clipped
    polygon can repeat a vertex: a zero-length edge gets h = s = 0 and contributes nothing)."""
    direction = end - start
    length = np.maximum(np.hypot(direction[:, 0], direction[:, 1]), 1e-300)
    unit = direction / length[:, None]
    distance = np.abs(start[:, 0] * unit[:, 1] - start[:, 1] * unit[:, 0])
    return distance, (start * unit).sum(1), (end * unit).sum(1)


def polygon_mass(polygon: np.ndarray, centre: np.ndarray, std: float) -> float:
    """Mass of a convex polygon (k, 2) under N(centre, std² I), closed form (module docstring)."""
    if len(polygon) == 0:
        return 0.0
    z = (polygon - centre) / std
    start, end = z, np.roll(z, -1, axis=0)
    swept = np.arctan2(start[:, 0] * end[:, 1] - start[:, 1] * end[:, 0], (start * end).sum(1))
    distance, s_start, s_end = _edge_geometry(start, end)
    distance = np.maximum(distance, 1e-300)  # an edge on a line through the centre: its triangle is flat
    radial = np.abs(owens_t(distance, s_end / distance) - owens_t(distance, s_start / distance))
    return float((np.sign(swept) * (np.abs(swept) / (2 * math.pi) - radial)).sum())


def _facet_masses(polygon: np.ndarray, centre: np.ndarray, std: float) -> np.ndarray:
    """Gaussian measure of each edge of a polygon (length-weighted density ∫ρ ds)."""
    z = (polygon - centre) / std
    distance, s_start, s_end = _edge_geometry(z, np.roll(z, -1, axis=0))
    return np.exp(-0.5 * distance**2) / math.sqrt(2 * math.pi) * np.abs(ndtr(s_end) - ndtr(s_start)) / std


def cell_masses(cells: LaguerreCells, centre: np.ndarray, std: float) -> np.ndarray:
    return np.array([polygon_mass(polygon, centre, std) for polygon in cells.polygons])


def _mass_jacobian(points: np.ndarray, cells: LaguerreCells, centre: np.ndarray, std: float) -> np.ndarray:
    m = len(points)
    jacobian = np.zeros((m, m))
    for j, (polygon, edges) in enumerate(zip(cells.polygons, cells.neighbours, strict=True)):
        if len(polygon) == 0:
            continue
        facets = _facet_masses(polygon, centre, std)
        for k, facet in zip(edges, facets, strict=True):
            if k >= 0:
                jacobian[j, k] -= facet / (2 * np.linalg.norm(points[j] - points[k]))
    jacobian[np.diag_indices(m)] = -jacobian.sum(1)
    return jacobian


@dataclass(frozen=True)
class NewtonResult:
    dual: np.ndarray
    masses: np.ndarray
    converged: bool


def newton_dual_weights(points: np.ndarray, weights: np.ndarray, centre: np.ndarray, std: float, *,
                        tolerance: float = 1e-12, start: np.ndarray | None = None) -> NewtonResult:
    """Dual weights g whose Laguerre cells hold ``weights`` under N(centre, std² I) to ``tolerance`` (largest
    ``|mass − weight|``), by damped Newton from ``start`` (0: the Voronoi cells, all non-empty)."""
    m = len(points)
    dual = np.zeros(m) if start is None else np.asarray(start, dtype=float).copy()
    masses = cell_masses(laguerre_cells(points, dual, centre, std), centre, std)
    floor = 0.5 * min(float(weights.min()), float(masses.min()))
    constant = np.full((m, m), 1.0 / m)
    for _ in range(NEWTON_ITERATIONS):
        error = np.abs(masses - weights).max()
        if error <= tolerance:
            return NewtonResult(dual, masses, True)
        cells = laguerre_cells(points, dual, centre, std)
        step = np.linalg.solve(_mass_jacobian(points, cells, centre, std) + constant, weights - masses)
        norm = np.linalg.norm(masses - weights)
        fraction = 1.0
        for _ in range(DAMPING_HALVINGS):
            trial = dual + fraction * step
            trial_masses = cell_masses(laguerre_cells(points, trial, centre, std), centre, std)
            if trial_masses.min() >= floor and np.linalg.norm(trial_masses - weights) <= (1 - fraction / 2) * norm:
                break
            fraction /= 2
        else:
            return NewtonResult(dual, masses, False)
        dual, masses = trial, trial_masses
    return NewtonResult(dual, masses, bool(np.abs(masses - weights).max() <= tolerance))
