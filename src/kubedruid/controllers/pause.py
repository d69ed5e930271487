"""Which op holds a Druid's pause: asked on every pass over a paused Druid (the provisioner's, the renewal check's),
so the informer answers while it shows that op unfinished. Only what it does not show unfinished is asked of the
apiserver (an op created a moment ago may not have reached the informer yet); the informer's news of the op's end
enqueues the Druid again (Controllers.on_ops_request), so a pass never keeps a pause for a finished op."""

from __future__ import annotations

from kubedruid.kube.client import Kube

from .ops import queue as ops_queue

OPS_API = "ops.kubedb.com/v1alpha1"


async def unfinished_op_holding(kube: Kube, namespace: str, paused: dict | None) -> dict | None:
    """The unfinished DruidOpsRequest that the Paused condition `paused` names, or None."""
    name = ops_queue.paused_by((paused or {}).get("message"))
    if name is None:
        return None
    for reader in (kube, kube.fresh):
        op = await reader.get(OPS_API, "DruidOpsRequest", name, namespace)
        if op is not None and (op.get("status") or {}).get("phase") not in ops_queue.FINISHED:
            return op
    return None
