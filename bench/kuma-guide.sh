#!/usr/bin/env bash
# The Kuma guide's check ("Progressively rolling in strict mTLS"), scripted for
# every dataplane the way a user would: list the dataplanes with curl and jq,
# then for each inbound fetch the sidecar's stats through the control plane and
# grep the guide's two counters, cluster.localhost_<port>.upstream_cx_total and
# inbound_<ip>_<port>.rbac.allowed, printing their difference. It is the
# comparison for strictly's poll cycle, not a tool: it knows legacy names only.
#
#   bench/kuma-guide.sh URL [MESH] [JOBS]
#
# JOBS (default 8, strictly's --concurrency) dataplanes are checked at a time.
set -euo pipefail

url=$1
mesh=${2:-default}
jobs=${3:-8}

# One "name address port" line per inbound, every page of the listing.
list_inbounds() {
  local offset=0 page
  while :; do
    page=$(curl -sf "$url/meshes/$mesh/dataplanes/_overview?size=1000&offset=$offset")
    jq -r '.items[] | .name as $name | .dataplane.networking as $net
           | $net.inbound[]? | "\($name) \($net.address) \(.port)"' <<<"$page"
    [ "$(jq -r '.next' <<<"$page")" = null ] && return
    offset=$((offset + 1000))
  done
}

# The guide's difference for one inbound: connections the inbound's cluster
# opened minus those RBAC allowed, i.e. the ones that were not mesh mTLS.
check_inbound() {
  local name=$1 address=$2 port=$3 stats total allowed
  stats=$(curl -sf "$url/meshes/$mesh/dataplanes/$name/stats")
  total=$(grep -F "cluster.localhost_$port.upstream_cx_total:" <<<"$stats" | awk '{print $2}')
  allowed=$(grep -F "inbound_${address//./_}_$port.rbac.allowed:" <<<"$stats" | awk '{print $2}')
  echo "$name $port $((${total:-0} - ${allowed:-0}))"
}

export url mesh
export -f check_inbound
list_inbounds | xargs -P "$jobs" -n 3 bash -c 'check_inbound "$@"' _
