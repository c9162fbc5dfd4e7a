#!/usr/bin/env bash
# Build the Kubernetes cluster the tests run — etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, and the node's kubelet and pause (sandbox) binary — from source,
# once per machine, into a cache keyed by version. No registry ships these binaries here;
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
ISTIO_API=${MLSHIP_ISTIO_API_VERSION:-1.32.0}  # Istio's published CRDs, for the canary
CACHE=${MLSHIP_KUBE_CACHE:-$HOME/.cache/mlship/k8s}/$KUBERNETES
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet pause istio-crds.yaml)
export GOWORK=off GOFLAGS=-mod=mod
HERE=$(cd "$(dirname "$0")" && pwd)

# one build at a time: a second caller (the tests, while .ci/run's own build runs) waits
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9

built() {
    for binary in "${BINARIES[@]}"; do [[ -e $CACHE/$binary ]] || return 1; done
}

if built; then
    echo "Kubernetes $KUBERNETES and etcd $ETCD: already built in $CACHE"
    exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build Kubernetes" >&2; exit 2; }
mkdir -p "$CACHE"
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/mlship-k8s-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

module_dir() {  # where `go mod download` puts a module's source
    go mod download -json "$1" | "${PYTHON:-python3}" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

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
istio=$(module_dir "istio.io/api@v$ISTIO_API")
"${PYTHON:-python3}" - "$istio/kubernetes/customresourcedefinitions.gen.yaml" "$CACHE/istio-crds.yaml" <<'PY'
import sys, yaml
wanted = {"virtualservices.networking.istio.io", "destinationrules.networking.istio.io"}
crds = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["metadata"]["name"] in wanted]
assert len(crds) == len(wanted), [d["metadata"]["name"] for d in crds]
yaml.safe_dump_all(crds, open(sys.argv[2], "w"))
PY
built
echo "Kubernetes $KUBERNETES and etcd $ETCD built in $((SECONDS - started)) s into $CACHE"
