"""wgf — Wasserstein gradient flows solved two ways and compared.

The package ties the numerical folders together: :mod:`cases` (what to solve),
:mod:`meshes`, :mod:`solvers` (how), :mod:`postprocess` (what came out).  This
package holds the parts they share at run time: the error types, the results
file writer and the command line.
"""

__version__ = "0.1.0"


def _one_blas_thread_per_rank() -> None:
    """Under ``mpiexec -n k`` (k > 1), default OpenMP/OpenBLAS to one thread per rank.

    Each rank would otherwise start a thread pool as wide as the machine, and the ranks'
    pools fight for the cores: fem-jko on fokker_planck_ou_2d, 256², took 1.02 s per step
    on 2 ranks with the pools and 0.52 s without (0.79 s and 0.74 s on 1 rank).  It has
    to happen before NumPy loads its BLAS, hence here; explicit settings win.
    """
    import os

    if int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")


_one_blas_thread_per_rank()
