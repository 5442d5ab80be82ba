#!/usr/bin/env bash
# Installs the real components the tests start (nats-server, promtool, chromium) when missing.
# Debian/Ubuntu only: uses apt-get, as root or through sudo. Prints what it does on stderr.
set -euo pipefail

need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ "${MOCKFLEET_NEED_CHROMIUM:-1}" = "1" ] && ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "mockfleet: missing ${need[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "mockfleet: missing ${need[*]}; run as root or install them by hand" >&2
    exit 1
  fi
fi
echo "mockfleet: installing ${need[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
