#!/usr/bin/env bash
# Install the system services the tests use (Debian packages): redis-server for forge-plugin-cache.
# The tests start their own server on a free loopback port, so nothing is started here.
# Skipped (with a note) where apt-get is unavailable or we are not root; the affected tests then skip.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[[ ${#need[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "note: not root or no apt-get; install ${need[*]} yourself (tests needing it will skip)" >&2
fi
