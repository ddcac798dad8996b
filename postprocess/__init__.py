"""Post-processing: reading results files, norms and comparisons.

Never imports a solver: post-processing and solvers meet only in the results file.
"""

from wgf.postprocess.results import read_results

__all__ = ["read_results"]
