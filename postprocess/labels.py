"""Names of runs in tables, legends and files: unique, and as short as they can be."""

from __future__ import annotations

from wgf.postprocess.results import Results


def run_labels(runs: list[Results]) -> list[str]:
    """One unique name per run, in the order of ``runs``.

    A run whose solver occurs once is named by its solver.  Runs that share a solver get
    the solver plus the shortest tail of their file path that tells them apart: the file
    stem, then ``parent/stem``, and so on (two runs of one solver usually differ in the
    directory, as ``a/heat_1d_blob.h5`` and ``b/heat_1d_blob.h5``).  If even the full
    paths coincide (one file given twice), the position in ``runs`` is appended.
    """
    labels = [r.solver for r in runs]
    for solver in {r.solver for r in runs}:
        same = [i for i, r in enumerate(runs) if r.solver == solver]
        if len(same) == 1:
            continue
        parts = [runs[i].path.with_suffix("").parts for i in same]
        for depth in range(1, max(len(p) for p in parts) + 1):
            tails = ["/".join(p[-depth:]) for p in parts]
            if len(set(tails)) == len(tails):
                break
        else:
            tails = [f"{tail}[{i}]" for tail, i in zip(tails, same, strict=True)]
        for i, tail in zip(same, tails, strict=True):
            labels[i] = f"{solver} ({tail})"
    return labels
