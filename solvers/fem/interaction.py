"""W∗ρ on a P1 mesh: the interaction's first variation at every vertex.

With the vertex quadrature rule the mass of ρ_h is Σ_j m_j ρ_j δ_{x_j}, so

    (W∗ρ_h)(x_i) ≈ Σ_{j≠i} m_j ρ_j W_δ(|x_i − x_j|),   F_W = ½ Σ_i m_i ρ_i (W∗ρ_h)(x_i):

the free-space convolution over the domain (not a Neumann Poisson problem), and exactly
the interaction of the lumped measure, whose first variation it is.  The sums are
:meth:`wgf.solvers.energy.FreeEnergy.interaction_potential`'s: direct for small meshes,
the particle-mesh FFT (O(N log N), its near-origin cells averaged) above
:data:`DIRECT_PAIRS` pairs.  Distinct vertices are at least h_min apart, so a singular
kernel (log r, r^{-a} with a < d) needs no mollifier there; the self pair j = i, where W
is infinite, is replaced by the kernel's average over the ball of the vertex's own mass,
m_i ρ_i · W̄(a_i) with |B(a_i)| = m_i (a cell average as Carrillo–Chertock–Huang use).
Both the pair sum and the self term then converge with h (O(h² log h) for log r).
Every rank evaluates its own vertices (owned and ghost) against all vertices, gathered
once per evaluation: the result does not depend on the number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from wgf.solvers.energy import FreeEnergy

#: Above this many target–source pairs on a rank the sums go through the particle mesh.
DIRECT_PAIRS = 2e7
#: Gauss–Legendre points of the radial average W̄ (the integrand r^{d-1}W(r) is at worst
#: r log r or r^{d-1-a} at 0, which Gauss points, all inside (0, a), integrate well).
AVERAGE_POINTS = 64


def ball_average(W: Callable[[np.ndarray], np.ndarray], radius: np.ndarray, dim: int) -> np.ndarray:
    """W̄(a) = (1/|B(a)|) ∫_{B(a)} W(|z|) dz for each radius a (1-D: the interval [-a, a])."""
    nodes, weights = np.polynomial.legendre.leggauss(AVERAGE_POINTS)
    s, w = 0.5 * (nodes + 1.0), 0.5 * weights  # on (0, 1)
    # ∫_B W = |S^{d-1}| ∫_0^a W(r) r^{d-1} dr and |B| = |S^{d-1}| a^d/d: the ratio is
    # d ∫_0^1 W(a s) s^{d-1} ds.
    r = np.outer(radius, s)
    return dim * (W(r) * s ** (dim - 1)) @ w


class MeshConvolution:
    """W∗ρ_h at the vertices of a P1 space (see the module docstring).

    Args:
        energy: The free energy (its interaction term).
        coords: Coordinates of this rank's dofs, owned first, (n_local, d).
        masses: Lumped masses of this rank's dofs, (n_local,).
        n_owned: How many of them this rank owns.
        global_index: Their global indices (the owned ranges of the ranks, in rank order).
        comm: The mesh's communicator.
    """

    def __init__(
        self,
        energy: FreeEnergy,
        coords: np.ndarray,
        masses: np.ndarray,
        n_owned: int,
        global_index: np.ndarray,
        comm: MPI.Comm,
    ) -> None:
        self.energy, self.comm, self.n_owned = energy, comm, n_owned
        self.masses = masses
        self.sources = np.concatenate(comm.allgather(coords[:n_owned]))
        # A ghost's own coordinates differ from its owner's in the last bits: taken from
        # the gathered sources, the self pair sits at distance exactly 0 and is skipped.
        self.targets = self.sources[global_index]
        self.source_masses = np.concatenate(comm.allgather(masses[:n_owned]))
        pairs = len(coords) * len(self.sources)
        self.method = "direct" if pairs <= DIRECT_PAIRS else "mesh"
        self.self_term = np.zeros(len(coords))
        if self.method == "direct":
            dim = coords.shape[1]
            unit_ball = {1: 2.0, 2: np.pi, 3: 4.0 * np.pi / 3.0}[dim]
            radius = (masses / unit_ball) ** (1.0 / dim)
            self.self_term = masses * ball_average(energy.interaction.W, radius, dim)

    def __call__(self, rho: np.ndarray) -> np.ndarray:
        """(W∗ρ_h) at this rank's dofs, from the nodal values ``rho`` (owned first)."""
        values = np.concatenate(self.comm.allgather(rho[: self.n_owned]))
        pairs = self.energy.interaction_potential(
            self.targets, self.sources, self.source_masses * values, 0.0, self.method
        )
        return pairs + self.self_term * rho

    def energy_of(self, rho: np.ndarray, potential: np.ndarray | None = None) -> float:
        """½ Σ_i m_i ρ_i (W∗ρ_h)(x_i) over all vertices; ``potential``: W∗ρ_h if known."""
        potential = self(rho) if potential is None else potential
        own = slice(0, self.n_owned)
        local = 0.5 * float(self.masses[own] @ (rho[own] * potential[own]))
        return self.comm.allreduce(local, op=MPI.SUM)
