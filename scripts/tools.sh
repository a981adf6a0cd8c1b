#!/usr/bin/env bash
# tools.sh: installs, with apt-get, the programs that tests run as real
# parts when they are missing: dot (graphviz) for the topology test, and
# promtool and prometheus (Debian's prometheus package) for the monitoring
# tests. Needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0

echo "tools.sh: installing ${need[*]} with apt-get" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
