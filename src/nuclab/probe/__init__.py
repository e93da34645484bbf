"""The RTT probe: a UDP echo prober and responder (plus TCP connect timing) between peers or nodes.

Runs as a sidecar next to each experiment peer (``nuclab probe``) and, on the host network, as
the node-to-node DaemonSet (``nuclab probe --node``). Every probe answers the echo requests of
the others on the same port it probes from, so one port per pod (or node) is all it needs.
"""

from __future__ import annotations
