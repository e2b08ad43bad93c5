"""The test suite: test modules in folders named like the package's parts; shared helpers here.

Helpers: `builders` (objects), `fakeapi` (an API server for faults a real one cannot produce),
`cluster` (the real kube-apiserver + etcd), `exporter_process`, `exposition`, `chart`, `tls`,
`prometheus` (a real Prometheus), `oracle` (KubeVirt's own code) and `fleets` (generated fleets).
"""

from pathlib import Path

#: The repository's root directory.
REPO = Path(__file__).resolve().parent.parent
