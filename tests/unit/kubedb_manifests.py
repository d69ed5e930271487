"""The Druid manifests of spec §1.7 (KubeDB's docs style), shared by the API unit tests."""

PLAIN = """
apiVersion: kubedb.com/v1alpha2
kind: Druid
metadata: {name: druid-cluster, namespace: demo}
spec:
  version: 36.0.0
  deepStorage: {type: s3, configSecret: {name: deep-storage-config}}
  topology: {routers: {replicas: 1}}
  deletionPolicy: Delete
"""
TLS = """
apiVersion: kubedb.com/v1alpha2
kind: Druid
metadata: {name: druid-cluster-tls, namespace: demo}
spec:
  version: 36.0.0
  enableSSL: true
  tls:
    issuerRef: {apiGroup: cert-manager.io, kind: Issuer, name: druid-ca-issuer}
  deepStorage: {type: s3, configSecret: {name: deep-storage-config}}
  topology: {routers: {replicas: 1}}
  deletionPolicy: Delete
"""
