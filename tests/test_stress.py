"""The OU stress set (benchmarks/ou_stress.py): fem-jko never reports a wrong answer as success."""

import subprocess
import sys

from tests.conftest import ROOT


def test_fem_jko_matches_fem_implicit_or_stops_on_anisotropic_ou_problems():
    # The three most anisotropic problems of the set (eigenvalue ratios 17, 15 and 13).
    args = ["--seeds", "1,7,13", "--t-end", "0.3"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ou_stress.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wrong answers with exit 0: 0" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if "(pass)" in line]
    assert len(rows) == 3
