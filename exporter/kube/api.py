"""The connection to the Kubernetes API server: credentials, and the endpoints of each kind.

Contract:
- `connect(kubeconfig=)` yields an `ApiServer` for the kubeconfig when given, else in-cluster when
  running in a pod, else $KUBECONFIG or ~/.kube/config; it raises `KubeError` naming the source
  when that cannot be loaded. Exec-plugin and gcp credentials are renewed while it is open;
  in-cluster, each request carries the ServiceAccount token file as it was at most a minute ago,
  so a token the kubelet rotates (at 80 % of its lifetime, at least 10 minutes) is used before
  the old one expires.
- `ApiServer.get(path, query, request_timeout=)` is an authenticated GET answered with the raw
  response, whatever its status (the caller releases it).
- `targets_for(kind, settings)` are the endpoints that together make up a kind in the scope: VMIs,
  VMs and VMIMs per namespace when namespaces are given, the KubeVirt CR always cluster-wide; the
  label selector goes to the server for VMIs only.

This is the only module that imports kubernetes_asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from exporter import __version__
from exporter.model import Resource

log = structlog.get_logger("exporter.kube")

GROUP_VERSION = "kubevirt.io/v1"
#: The kinds that `--namespace` limits (the KubeVirt CR is always read cluster-wide).
NAMESPACED_BY_SCOPE: frozenset[Resource] = frozenset(
    {"virtualmachineinstances", "virtualmachines", "virtualmachineinstancemigrations"}
)


class KubeError(RuntimeError):
    """The cluster could not be configured, reached or read; str() names the kind and problem."""


class WatchSettings(Protocol):
    """The settings this module reads (exporter.settings.Settings satisfies it)."""

    @property
    def kubeconfig(self) -> str | os.PathLike[str] | None: ...
    @property
    def namespaces(self) -> Sequence[str]: ...
    @property
    def label_selector(self) -> str | None: ...


@dataclass(frozen=True)
class Target:
    """One list/watch endpoint: a kind, cluster-wide (namespace None) or in one namespace."""

    resource: Resource
    namespace: str | None = None
    label_selector: str | None = None

    @property
    def path(self) -> str:
        """The REST path of the collection."""
        where = f"namespaces/{self.namespace}/" if self.namespace is not None else ""
        return f"/apis/{GROUP_VERSION}/{where}{self.resource}"

    @property
    def where(self) -> str:
        """For logs and problems: the namespace, or "cluster-wide"."""
        return self.namespace if self.namespace is not None else "cluster-wide"


def targets_for(resource: Resource, settings: WatchSettings) -> tuple[Target, ...]:
    """The endpoints that together make up `resource` in the settings' scope (module contract)."""
    selector = (settings.label_selector or None) if resource == "virtualmachineinstances" else None
    if resource in NAMESPACED_BY_SCOPE and settings.namespaces:
        return tuple(Target(resource, ns, selector) for ns in sorted(set(settings.namespaces)))
    return (Target(resource, None, selector),)


class ApiServer:
    """Authenticated GETs against the API server, answered with the raw aiohttp response."""

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        self._client = api_client

    async def get(
        self, path: str, query: Sequence[tuple[str, str]], *, request_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """GET `path`; the caller owns (and must release) the response, whatever its status."""
        response = await self._client.call_api(
            path,
            "GET",
            query_params=list(query),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=request_timeout,
        )
        return cast(aiohttp.ClientResponse, response)


@contextlib.asynccontextmanager
async def connect(*, kubeconfig: str | os.PathLike[str] | None) -> AsyncIterator[ApiServer]:
    """An API server client: `kubeconfig` when given, else in-cluster when running in a pod, else
    $KUBECONFIG or ~/.kube/config. Raises KubeError naming the source when it cannot be loaded."""
    configuration = k8s_client.Configuration()
    loader = await _load_configuration(configuration, kubeconfig)
    refresher = asyncio.create_task(_refresh_credentials(loader, configuration))
    try:
        async with k8s_client.ApiClient(configuration) as api_client:
            api_client.user_agent = f"kubevirt-update-exporter/{__version__}"
            yield ApiServer(api_client)
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


async def _load_configuration(
    configuration: k8s_client.Configuration, kubeconfig: str | os.PathLike[str] | None
) -> Any:
    """Fill `configuration`; returns the kubeconfig loader (None in-cluster)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            load_incluster = k8s_config.load_incluster_config
            # try_refresh_token: re-read the token file (at most once a minute) on every request;
            # kept explicit, tests/kube/test_kube_credentials.py fails without it.
            load_incluster(client_configuration=configuration, try_refresh_token=True)  # type: ignore[no-untyped-call]  # unannotated upstream
        except Exception as exc:  # any failure here is a configuration problem worth naming
            raise KubeError(f"in-cluster configuration: {exc}") from exc
        return None
    source = _kubeconfig_source(kubeconfig)
    try:
        return await k8s_config.load_kube_config(
            config_file=source, client_configuration=configuration, persist_config=False
        )
    except Exception as exc:  # any failure here is a configuration problem worth naming
        raise KubeError(f"kubeconfig {source}: {exc}") from exc


def _kubeconfig_source(kubeconfig: str | os.PathLike[str] | None) -> str:
    """The kubeconfig to read: the flag, else $KUBECONFIG (may list several files), else the
    default file."""
    if kubeconfig is not None:
        return os.fspath(kubeconfig)
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


async def _refresh_credentials(loader: Any, configuration: k8s_client.Configuration) -> None:
    """Renew exec-plugin / gcp tokens of a kubeconfig user (a no-op for other credentials)."""
    # refresh_token() renews only exec-plugin and gcp credentials (and fails on a loader without
    # a user); there is nothing to renew for certificates and static tokens.
    user = getattr(loader, "_user", None) or {}
    if getattr(loader, "provider", None) != "gcp" and "exec" not in user:
        return
    try:
        await k8s_config.refresh_token(loader, client_configuration=configuration)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the next request's 401 will be reported; keep running
        log.error("kube.credentials_refresh_failed", error=str(exc))
