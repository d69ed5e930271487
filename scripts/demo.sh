#!/usr/bin/env bash
# The kubedruid demo on the local control plane, unattended: plane up, operator running, a CA Issuer, a Druid
# without TLS reaching Ready (KubeDB's docs manifest, unchanged), then add-TLS with live progress, then the result.
# Where the machine allows it (root, cgroups, runc, CNI plugins: `kubedruid dev check-node`), the pods really run on
# one real node and the demo ends with an SQL answer over HTTPS; otherwise on kwok's simulated nodes, saying why.
# KUBEDRUID_DEMO_NODE=kwok|real chooses instead of that check.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

mode=${KUBEDRUID_DEMO_NODE:-auto}
if [ "$mode" = auto ]; then
  if why=$($bin/kubedruid dev check-node 2>&1); then mode=real; else
    mode=kwok
    echo "note: the pods will be simulated (kwok), because ${why#a real node cannot run here; }" >&2
  fi
fi
up_flags=(); [ "$mode" = real ] && up_flags=(--real-node)

step "starting the local control plane, $([ "$mode" = real ] && echo "with one real node" || echo "with kwok nodes") (the first run builds it from Go modules: 20-30 minutes)"
eval "$($bin/kubedruid dev up "${up_flags[@]}")"
state=$(dirname "$KUBECONFIG")
$bin/kubedruid dev status --dir "$state"

step "starting the operator (log: $state/logs/operator.log; 'make demo-down' stops it with the plane)"
if ! pgrep -f "kubedruid operator run --kubeconfig $KUBECONFIG" >/dev/null; then
  nohup "$bin/kubedruid" operator run --kubeconfig "$KUBECONFIG" --probe-port 0 >>"$state/logs/operator.log" 2>&1 &
fi
probe='{"apiVersion":"kubedb.com/v1alpha2","kind":"Druid","metadata":{"name":"probe","namespace":"default"},
        "spec":{"version":"0.0.0","deepStorage":{"type":"s3"},"topology":{}}}'
for i in $(seq 120); do  # ready once its admission webhook refuses an unknown version
  out=$(echo "$probe" | kubectl create --dry-run=server -f - 2>&1 || true)
  grep -q 'version not supported' <<<"$out" && break
  [ "$i" = 120 ] && { echo "the operator did not start; see $state/logs/operator.log" >&2; exit 1; }
  sleep 0.5
done

step "a fresh 'demo' namespace, a CA and a cert-manager Issuer (as in KubeDB's reconfigure-TLS guide)"
kubectl delete namespace demo --ignore-not-found --wait=true --timeout=300s >/dev/null
kubectl create namespace demo
# On the real node each of the add's three rolls restarts six JVMs one by one, ~20-30 s each on two busy cores.
version=36.0.0 ready_timeout=180s op_minutes=6
if [ "$mode" = real ]; then  # a Druid version whose image was built here, and the guide's S3 deep storage
  # the newest whose image runs KubeDB's default configuration (MySQL metadata, basic security, S3)
  version=$(kubectl get druidversions -l kubedruid.dev/image=local,kubedruid.dev/runs-defaults=true \
    -o jsonpath='{.items[-1:].spec.version}')
  [ -n "$version" ] || { echo "error: no local Druid image runs the default configuration" \
    "(kubectl get druidversions -L kubedruid.dev/runs-defaults)" >&2; exit 1; }
  ready_timeout=900s op_minutes=20
  kubectl apply -f examples/s3-local.yaml
fi
tmp=$(mktemp -d)
openssl req -x509 -nodes -days 365 -newkey rsa:2048 -keyout "$tmp/ca.key" -out "$tmp/ca.crt" \
  -subj "/CN=ca/O=kubedb" 2>/dev/null
kubectl -n demo create secret tls druid-ca --cert="$tmp/ca.crt" --key="$tmp/ca.key"
rm -rf "$tmp"
kubectl apply -f - <<'YAML'
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: druid-ca-issuer, namespace: demo}
spec: {ca: {secretName: druid-ca}}
---
apiVersion: v1
kind: Secret
metadata: {name: deep-storage-config, namespace: demo}
stringData:
  druid.storage.type: "s3"
  druid.storage.bucket: "druid"
  druid.storage.baseKey: "druid/segments"
  druid.s3.accessKey: "minio"
  druid.s3.secretKey: "minio123"
  druid.s3.protocol: "http"
  druid.s3.enablePathStyleAccess: "true"
  druid.s3.endpoint.signingRegion: "us-east-1"
  druid.s3.endpoint.url: "http://myminio-hl.demo.svc.cluster.local:9000/"
YAML

step "a Druid without TLS (KubeDB's druid-cluster manifest, unchanged)"
kubectl apply -f - <<YAML
apiVersion: kubedb.com/v1alpha2
kind: Druid
metadata:
  name: druid-cluster
  namespace: demo
spec:
  version: $version
  deepStorage:
    type: s3
    configSecret:
      name: deep-storage-config
  topology:
    routers:
      replicas: 1
  deletionPolicy: Delete
YAML
kubectl -n demo wait --for=jsonpath='{.status.phase}'=Ready dr/druid-cluster --timeout=$ready_timeout
kubectl -n demo get dr,petsets,pods,svc

step "add TLS with a DruidOpsRequest (drops-add-tls from the guide)"
kubectl apply -f - <<'YAML'
apiVersion: ops.kubedb.com/v1alpha1
kind: DruidOpsRequest
metadata:
  name: drops-add-tls
  namespace: demo
spec:
  type: ReconfigureTLS
  databaseRef:
    name: druid-cluster
  tls:
    issuerRef:
      name: druid-ca-issuer
      kind: Issuer
      apiGroup: "cert-manager.io"
    certificates:
    - alias: client
      subject:
        organizations: [druid]
        organizationalUnits: [client]
  timeout: 5m
  apply: IfReady
YAML
start=$SECONDS last=""
while :; do
  # One read for both, so that the phase and the last condition belong to the same version of the object.
  read -r phase now < <(kubectl -n demo get drops drops-add-tls \
    -o jsonpath='{.status.phase}{" "}{.status.conditions[-1:].type}{"\n"}') || true
  [ "$now" != "$last" ] && printf '  %4ss  %-12s %s\n' "$((SECONDS - start))" "${phase:-Pending}" "$now" && last=$now
  case $phase in Successful|Failed) break ;; esac
  [ $((SECONDS - start)) -gt $((op_minutes * 60)) ] && {
    echo "the op did not finish in $op_minutes minutes" >&2; kubectl -n demo get drops drops-add-tls -o yaml >&2; exit 1; }
  sleep 0.5
done
[ "$phase" = Successful ] || { kubectl -n demo get drops drops-add-tls -o yaml >&2; exit 1; }

step "the result"
kubectl -n demo get dr,drops,certificates
echo "server certificate:"
kubectl -n demo get secret druid-cluster-server-cert -o jsonpath='{.data.tls\.crt}' | base64 -d |
  openssl x509 -noout -subject -issuer -serial -enddate | sed 's/^/  /'
echo "TLS properties rendered for every node (common.runtime.properties):"
uid=$(kubectl -n demo get dr druid-cluster -o jsonpath='{.metadata.uid}')
kubectl -n demo get secret "druid-cluster-${uid: -6}" -o jsonpath='{.data.common\.runtime\.properties}' | base64 -d |
  grep -E 'enableTlsPort|enablePlaintextPort|https.keyStorePath|validateHostnames' | sed 's/^/  /'

if [ "$mode" = real ]; then
  step "SQL over HTTPS through the router Service, checked against the Issuer's CA and the Service's name"
  svc=druid-cluster-routers name=druid-cluster-routers.demo.svc.cluster.local
  ip=$(kubectl -n demo get svc $svc -o jsonpath='{.spec.clusterIP}')
  port=$(kubectl -n demo get svc $svc -o jsonpath='{.spec.ports[0].port}')
  auth=$(kubectl -n demo get dr druid-cluster -o jsonpath='{.spec.authSecret.name}')
  auth=${auth:-druid-cluster-auth}  # the operator defaults spec.authSecret to <db>-auth without writing it back
  user=$(kubectl -n demo get secret "$auth" -o jsonpath='{.data.username}' | base64 -d)
  pass=$(kubectl -n demo get secret "$auth" -o jsonpath='{.data.password}' | base64 -d)
  ca=$(mktemp); kubectl -n demo get secret druid-ca -o jsonpath='{.data.tls\.crt}' | base64 -d > "$ca"
  echo "  POST https://$name:$port/druid/v2/sql  (the Service's address $ip)"
  curl -sS --fail --cacert "$ca" --resolve "$name:$port:$ip" -u "$user:$pass" -H 'Content-Type: application/json' \
    -d '{"query":"SELECT server_type, COUNT(*) AS servers, MIN(tls_port) AS tls_port FROM sys.servers GROUP BY 1"}' \
    "https://$name:$port/druid/v2/sql" | sed 's/^/  /'
  echo; rm -f "$ca"
fi

cat <<EOT

Done. The plane and the operator keep running. Try next:
  eval "\$($bin/kubedruid dev up)"          # KUBECONFIG and the built kubectl for your shell
  kubectl -n demo get drops drops-add-tls -o yaml   # every step as a condition
  kubectl -n demo get events --sort-by=.lastTimestamp
  # rotate, change the issuer, remove: docs/user-guide.md
  make demo-down                             # stop the operator and every process of the plane
EOT
