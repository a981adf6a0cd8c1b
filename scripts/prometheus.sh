#!/bin/sh
# Installs Debian's prometheus package (prometheus and promtool in
# /usr/bin) if either is missing, for the tests of monitoring/:
#   scripts/prometheus.sh
set -e
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
	exit 0
fi
if [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; then
	exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
