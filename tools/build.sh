#!/usr/bin/env bash
# Builds the local control plane's binaries from the pinned Go modules under tools/<set>/ and caches them by
# version outside the work tree: ~/.cache/kubedruid/bin/<set>-<hash of go.mod, go.sum, main sources and the set's
# recipe below>/. A set whose cache directory is complete is not rebuilt; an edit of one recipe rebuilds that set
# only. Each set has its own lock: callers wait for a set being built, not for every set another caller asked for.
# Prints the cache directory of each set it was asked for.
#
#   tools/build.sh [k8s] [etcd] [kwok] [cert-manager] [helm] [containerd] [coredns]    (no argument: all sets)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KUBEDRUID_CACHE:-$HOME/.cache/kubedruid}/bin
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

mod_version() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }

recipe() {  # a set's branch of the case below, and the environment every build gets
  grep '^export ' "$here/build.sh"
  awk -v start="    $1)" 'index($0, start) == 1 {on = 1} on {print} on && /;;[[:space:]]*(#.*)?$/ {exit}' "$here/build.sh"
}

key() {  # what a set's binaries depend on
  { (cd "$here/$1" && cat go.mod go.sum $(ls *.go 2>/dev/null)); recipe "$1"; } | sha256sum | cut -c1-16
}

build_set() {
  local set=$1 out
  out="$cache/$set-$(key "$set")"
  if [ -f "$out/.complete" ]; then echo "$out"; return; fi
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  local start=$SECONDS
  echo "building $set into $out (cold builds take minutes)..." >&2
  case $set in
    k8s)
      local v; v=$(mod_version k8s k8s.io/kubernetes); local minor=${v#v1.}; minor=${minor%%.*}
      local ld="-s -w"
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
      done
      go build -C "$here/k8s" -trimpath -ldflags "$ld" -o "$out.tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy ;;
    etcd)
      go build -C "$here/etcd" -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
      go build -C "$here/etcd" -trimpath -ldflags "-s -w" -o "$out.tmp/etcdctl" go.etcd.io/etcd/etcdctl/v3 ;;
    kwok)
      go build -C "$here/kwok" -trimpath -ldflags "-s -w" -o "$out.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok ;;
    cert-manager)
      local v; v=$(mod_version cert-manager github.com/cert-manager/cert-manager)
      go build -C "$here/cert-manager" -trimpath \
        -ldflags "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$v" -o "$out.tmp/cert-manager-controller" . ;;
    helm)
      local v; v=$(mod_version helm helm.sh/helm/v4)
      go build -C "$here/helm" -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$v" -o "$out.tmp/helm" helm.sh/helm/v4/cmd/helm ;;
    containerd)  # the real node's CRI runtime (static: the btrfs snapshotter drops out without cgo)
      go build -C "$here/containerd" -trimpath -tags "urfave_cli_no_docs no_btrfs no_devmapper no_zfs" \
        -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(mod_version containerd github.com/containerd/containerd/v2)" \
        -o "$out.tmp/" github.com/containerd/containerd/v2/cmd/containerd \
        github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr ;;
    coredns)  # the real node's cluster DNS
      go build -C "$here/coredns" -trimpath -ldflags "-s -w" -o "$out.tmp/coredns" . ;;
    *) echo "unknown set: $set" >&2; exit 2 ;;
  esac
  echo "$((SECONDS - start))" > "$out.tmp/.build-seconds"
  touch "$out.tmp/.complete"
  rm -rf "$out"; mv "$out.tmp" "$out"
  find "$cache" -maxdepth 1 -name "$set-*" ! -path "$out" -exec rm -rf {} +  # binaries of older pins
  echo "built $set in $((SECONDS - start)) s" >&2
  echo "$out"
}

sets=("$@"); [ ${#sets[@]} -gt 0 ] || sets=(k8s etcd kwok cert-manager helm containerd coredns)
mkdir -p "$cache"
for s in "${sets[@]}"; do
  # concurrent callers (tests, demo, make test's two chains) wait for a set's one build instead of racing it
  ( exec 9>"$cache/.lock-$s"; flock 9; build_set "$s" )
done
