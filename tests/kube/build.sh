#!/usr/bin/env bash
# Build the Kubernetes cluster the tests run — etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, and the node's kubelet and pause (sandbox) binary — its Gateway
# API data plane (Traefik, with the Gateway API CRDs it implements) and a Prometheus that
# discovers its pods (Debian's is built without Kubernetes discovery) from source, once per
# machine, into caches keyed by version. No registry ships these binaries here;
# the Go module proxy serves their sources. The node's container runtime and CNI plugins
# are Debian's (containerd, runc, containernetworking-plugins).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces each staging module
# (k8s.io/api, client-go, ...) by ./staging/src/k8s.io/<name>, folders the module's zip
# leaves out. So the module is copied, each of those replaces pointed at the published
# v0.<minor>.<patch> of the same release, and the commands built there. etcd's server module
# is built the same way (its replaces point at ../api, ../client, ../pkg).
set -euo pipefail

KUBERNETES=${MLSHIP_KUBERNETES_VERSION:-1.37.2}
ETCD=${MLSHIP_ETCD_VERSION:-3.6.16}  # 3.6: the API server's watch progress needs >= 3.5.13
# 3.7 does not build here (some of its dependencies are refused by the module proxy)
TRAEFIK=${MLSHIP_TRAEFIK_VERSION:-3.6.12}
CACHE=${MLSHIP_KUBE_CACHE:-$HOME/.cache/mlship/k8s}/$KUBERNETES
TRAEFIK_CACHE=${MLSHIP_KUBE_CACHE:-$HOME/.cache/mlship/k8s}/traefik-$TRAEFIK
PROMETHEUS=${MLSHIP_PROMETHEUS_MODULE_VERSION:-0.316.0}  # the Go module's version of Prometheus 3
PROMETHEUS_CACHE=${MLSHIP_KUBE_CACHE:-$HOME/.cache/mlship/k8s}/prometheus-$PROMETHEUS
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet pause)
export GOWORK=off GOFLAGS=-mod=mod
HERE=$(cd "$(dirname "$0")" && pwd)

# one build at a time: a second caller (the tests, while .ci/run's own build runs) waits
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9

built() {
    for binary in "${BINARIES[@]}"; do [[ -e $CACHE/$binary ]] || return 1; done
}

traefik_built() {
    [[ -e $TRAEFIK_CACHE/traefik && -e $TRAEFIK_CACHE/gateway-api-crds.yaml ]]
}

prometheus_built() {
    [[ -e $PROMETHEUS_CACHE/prometheus ]]
}

if built && traefik_built && prometheus_built; then
    echo "Kubernetes $KUBERNETES, etcd $ETCD, Traefik $TRAEFIK and Prometheus $PROMETHEUS: already built in $(dirname "$CACHE")"
    exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build Kubernetes" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/mlship-k8s-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

module_dir() {  # where `go mod download` puts a module's source
    go mod download -json "$1" | "${PYTHON:-python3}" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

# Traefik: its own module, built as published (CGO off: a static binary); the Gateway API
# CRDs of the version its go.mod requires (the standard channel), which it implements
if ! traefik_built; then
    started=$SECONDS
    mkdir -p "$TRAEFIK_CACHE"
    cp -r "$(module_dir "github.com/traefik/traefik/v3@v$TRAEFIK")" "$work/traefik"
    chmod -R u+w "$work/traefik"
    (cd "$work/traefik" \
        && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$TRAEFIK_CACHE/traefik" ./cmd/traefik \
        && gateway_api=$(go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api) \
        && for crd in "$(module_dir "sigs.k8s.io/gateway-api@$gateway_api")"/config/crd/standard/*.yaml; do
               echo "---"; cat "$crd"; done >"$TRAEFIK_CACHE/gateway-api-crds.yaml.partial" \
        && mv "$TRAEFIK_CACHE/gateway-api-crds.yaml.partial" "$TRAEFIK_CACHE/gateway-api-crds.yaml")
    echo "Traefik $TRAEFIK built in $((SECONDS - started)) s into $TRAEFIK_CACHE"
fi
# Prometheus with one service discovery, Kubernetes' (its build tags leave out the others)
if ! prometheus_built; then
    started=$SECONDS
    mkdir -p "$PROMETHEUS_CACHE"
    cp -r "$(module_dir "github.com/prometheus/prometheus@v$PROMETHEUS")" "$work/prometheus"
    chmod -R u+w "$work/prometheus"
    (cd "$work/prometheus" \
        && CGO_ENABLED=0 go build -trimpath -tags "remove_all_sd enable_kubernetes_sd" \
            -ldflags='-s -w' -o "$PROMETHEUS_CACHE/prometheus" ./cmd/prometheus)
    echo "Prometheus (module v$PROMETHEUS) built in $((SECONDS - started)) s into $PROMETHEUS_CACHE"
fi
if built; then
    exit 0
fi
mkdir -p "$CACHE"
started=$SECONDS

cp -r "$(module_dir "go.etcd.io/etcd/server/v3@v$ETCD")" "$work/etcd"
chmod -R u+w "$work/etcd"
(cd "$work/etcd" \
    && sed -i -E "s#^(\s*)(go\.etcd\.io/etcd/[a-z0-9/]+) => \.\./[a-z0-9/]+\$#\1\2 => \2 v$ETCD#" go.mod \
    && go build -trimpath -ldflags='-s -w' -o "$CACHE/etcd" .)

source_dir=$(module_dir "k8s.io/kubernetes@v$KUBERNETES")
cp -r "$source_dir" "$work/kubernetes"
chmod -R u+w "$work/kubernetes"
cd "$work/kubernetes"
staging="0.${KUBERNETES#1.}"   # 1.37.2 -> 0.37.2
sed -i -E \
    -e "s#^(\s*)(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+#\1\2 => \2 v$staging#" \
    -e '/k8s\.io\/sample-/d' go.mod
# providerless: no cloud provider code; -s -w: no symbol tables (smaller, faster to link);
# -X: the version each binary reports (kubectl checks the server's, for skew)
minor=${KUBERNETES#1.}; minor=${minor%%.*}
version_flags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $package.gitVersion=v$KUBERNETES -X $package.gitMajor=1"
    version_flags+=" -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
done
go build -tags providerless -trimpath -ldflags="-s -w $version_flags" -o "$CACHE/" \
    ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubectl ./cmd/kubelet
# the pods' sandbox: static, so it runs alone in an image (tests/kube/pause)
(cd "$HERE/pause" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags='-s -w' -o "$CACHE/pause" pause.go)
built
echo "Kubernetes $KUBERNETES and etcd $ETCD built in $((SECONDS - started)) s into $CACHE"
