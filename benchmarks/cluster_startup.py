"""Time from starting etcd to kube-apiserver answering /readyz with the KubeVirt CRDs served.

Usage: .venv/bin/python -m benchmarks.cluster_startup [runs]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster import Cluster


def main(runs: int) -> None:
    figures = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as workdir:
            start = time.monotonic()
            cluster = Cluster.start(Path(workdir))
            figures.append(time.monotonic() - start)
            cluster.stop()
    print(f"cluster start (etcd -> /readyz + CRDs served), {runs} runs:")
    median = statistics.median(figures)
    print(f"  median {median:.2f}s  min {min(figures):.2f}s  max {max(figures):.2f}s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
