"""The lab's shared services as the monitoring role installs them: their in-cluster names, once.

The Python defaults (the load generator's Pushgateway) and the roles (through the filter
``nuclab_pushgateway``) read these; nothing else writes the names down.
"""

from __future__ import annotations

MONITORING_NAMESPACE = "monitoring"  # roles/monitoring's monitoring_namespace default

PUSHGATEWAY_RELEASE = "pushgateway"  # the Helm release of the prometheus-pushgateway chart
PUSHGATEWAY_SERVICE = f"{PUSHGATEWAY_RELEASE}-prometheus-pushgateway"  # the chart's fullname
PUSHGATEWAY_PORT = 9091  # the chart's service port


def pushgateway(namespace: str = MONITORING_NAMESPACE) -> dict[str, str | int]:
    """The Pushgateway of a lab whose monitoring runs in ``namespace``: its release, Service
    (name, namespace, port) and in-cluster URL."""
    return {
        "release": PUSHGATEWAY_RELEASE,
        "name": PUSHGATEWAY_SERVICE,
        "namespace": namespace,
        "port": PUSHGATEWAY_PORT,
        "url": f"http://{PUSHGATEWAY_SERVICE}.{namespace}.svc:{PUSHGATEWAY_PORT}",
    }
