"""The Kubernetes API client: list and watch the four KubeVirt kinds.

Modules, bottom up: `api` (connection, credentials, endpoints; the only importer of
kubernetes_asyncio), `errors` (what a failed request means), `listing` (List pages, the decoder,
`list_all`), `watching` (the list-then-watch loop of each kind, `run_watchers`). The entry points
are re-exported here.
"""

from exporter.kube.api import KubeError
from exporter.kube.listing import decode_list_page, list_all
from exporter.kube.watching import run_watchers

__all__ = ["KubeError", "decode_list_page", "list_all", "run_watchers"]
