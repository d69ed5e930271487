"""The Druid object the real-Druid tier runs, and kubedruid's rendering of it (through its own builders)."""

from __future__ import annotations

from dataclasses import dataclass

from kubedruid.api import Druid, apply_defaults
from kubedruid.druid.nodes import BROKERS, COORDINATORS, HISTORICALS, ROUTERS
from kubedruid.druid.properties import MetadataStore
from kubedruid.specs import cluster, names

from .harness import Node

UID = "5d2a7c1e-9b3f-4e8a-a6d0-7c41f2e9b815"
# The node types started as processes; middleManagers (mandatory in the topology, defaulted) are not started: no
# ingestion is needed to prove node-to-node TLS.
STARTED = (COORDINATORS, HISTORICALS, BROKERS, ROUTERS)


def manifest(name: str, namespace: str, version: str, *, tls: bool, security: bool,
             issuer: str = "druid-ca") -> dict:
    spec = {
        "version": version,
        "deepStorage": {"type": "s3"},
        "topology": {"routers": {"replicas": 1}},  # coordinators act as overlords (no overlords node type)
        "deletionPolicy": "WipeOut",
    }
    if not security:
        spec["disableSecurity"] = True
    if tls:
        spec["enableSSL"] = True
        spec["tls"] = {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": issuer}}
    return {"apiVersion": "kubedb.com/v1alpha2", "kind": "Druid",
            "metadata": {"name": name, "namespace": namespace, "uid": UID}, "spec": spec}


def druid(raw: dict) -> Druid:
    return apply_defaults(Druid.model_validate(raw))


def inputs(db: Druid) -> cluster.Inputs:
    """What the provisioner would look up (controllers/provisioner.py builds the same ClusterConfig)."""
    ns, name = db.metadata.namespace, db.metadata.name
    cfg = cluster.cluster_config(
        db, zookeeper=f"{names.zookeeper_service(name)}.{ns}.svc.{names.CLUSTER_DOMAIN}:2181",
        metadata=MetadataStore(type="MySQL", host=f"{name}-mysql-metadata.{ns}.svc.{names.CLUSTER_DOMAIN}",
                               port=3306, database="druid", user="root"),
        deep_storage={}, druid_version=db.spec.version)
    return cluster.Inputs(cluster=cfg, image=f"apache/druid:{db.spec.version}", run_as_user=1000,
                          metadata_secret=f"{name}-mysql-metadata-auth", uid=UID)


@dataclass(frozen=True)
class Rendered:
    db: Druid
    inputs: cluster.Inputs
    files: dict[str, str]
    nodes: list[Node]
    hosts: list[str]  # names that must resolve to loopback
    zookeeper: str


def render(db: Druid) -> Rendered:
    ins = inputs(db)
    ns, name = db.metadata.namespace, db.metadata.name
    nodes = [Node(t, names.pod_fqdn(name, ns, f"{names.petset_name(name, t)}-0")) for t in STARTED]
    zk = ins.cluster.zookeeper
    hosts = [n.fqdn for n in nodes] + [zk.split(":")[0]]
    return Rendered(db, ins, cluster.config_files(db, ins), nodes, hosts, zk)
