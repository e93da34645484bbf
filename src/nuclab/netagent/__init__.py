"""nuclab's node agent: network emulation of the experiments' peers, applied from each node.

A DaemonSet (role ``net_agent``, the one privileged workload nuclab runs) shapes each local
peer's egress in the peer's own network namespace: the experiment's per-peer latency, jitter and
loss, and its zone-to-zone ``matrix`` (an HTB class per destination zone with a netem child),
kept current as peers come and go and as the spec changes, and read back from ``tc``.
"""
