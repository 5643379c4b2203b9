"""`python -m taskq_operator`: wire settings, the Kubernetes client, the databases and the
handlers, then run kopf."""

from __future__ import annotations

import asyncio
import logging
import sys

import kopf
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from prometheus_client import start_http_server
from pydantic import ValidationError

from taskq_operator.databases import Databases, Maintenance
from taskq_operator.handlers import register
from taskq_operator.k8s import KubernetesPort
from taskq_operator.metrics import ConnectionsCollector, OperatorMetrics
from taskq_operator.reconcile.runtime import Runtime
from taskq_operator.settings import OperatorSettings

log = logging.getLogger("taskq_operator")


def _api_client() -> k8s_client.ApiClient:
    # the kubernetes package leaves these two untyped
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]  # KUBECONFIG
    return k8s_client.ApiClient()


async def run(settings: OperatorSettings) -> None:
    metrics = OperatorMetrics()
    databases = Databases(maintenance=Maintenance(settings.maintenance_interval, metrics))
    metrics.registry.register(ConnectionsCollector(databases.connections))
    runtime = Runtime(settings, KubernetesPort(_api_client()), databases, metrics)
    registry = kopf.OperatorRegistry()
    register(registry, runtime)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.metrics_host, metrics.registry)
    liveness = (
        f"http://{settings.metrics_host}:{settings.liveness_port}/healthz"
        if settings.liveness_port
        else None
    )
    await kopf.operator(
        registry=registry,
        standalone=True,  # one replica (Recreate): no peering needed
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = OperatorSettings()
    except ValidationError as error:
        for item in error.errors():
            field = "TASKQ_OPERATOR_" + str(item["loc"][0]).upper()
            print(f"taskq-operator: error: {field}: {item['msg']}", file=sys.stderr)
        return 2
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
