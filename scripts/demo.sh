#!/usr/bin/env bash
# The kubedruid demo on the local control plane. For now: bring the plane up and show that it is a working
# Kubernetes (nodes, a scheduled pod, cert-manager issuing a certificate).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

echo "==> starting the local control plane (first run builds it from Go modules: 15-25 minutes)"
eval "$($bin/kubedruid dev up)"
$bin/kubedruid dev status

echo "==> kubectl version / nodes"
kubectl version
kubectl get nodes -o wide

echo "==> a pod is scheduled onto a kwok node and becomes Ready"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo delete pod hello --ignore-not-found --wait=false >/dev/null
kubectl -n demo wait --for=delete pod/hello --timeout=30s >/dev/null 2>&1 || true
kubectl -n demo run hello --image=busybox --restart=Never >/dev/null
kubectl -n demo wait --for=condition=Ready pod/hello --timeout=60s
kubectl -n demo get pod hello -o wide

echo "==> cert-manager issues a certificate from a self-signed issuer"
kubectl apply -f - <<'YAML' >/dev/null
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned, namespace: demo}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: hello, namespace: demo}
spec:
  secretName: hello-tls
  commonName: hello.demo.svc
  dnsNames: [hello.demo.svc]
  issuerRef: {name: selfsigned, kind: Issuer}
YAML
kubectl -n demo wait --for=condition=Ready certificate/hello --timeout=60s
kubectl -n demo get certificate hello

cat <<EOT

The plane keeps running. Next:
  eval "\$($bin/kubedruid dev up)"   # KUBECONFIG and PATH (with kubectl) for your shell
  kubectl get pods -A
  $bin/kubedruid dev status
  make demo-down                      # stops every process of the plane
EOT
