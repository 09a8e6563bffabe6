#!/usr/bin/env bash
# Installs the Debian packages Parley's build needs, if any are missing.
# Safe to run repeatedly: it only calls apt-get when something is absent.
set -euo pipefail

# Build-time packages. The media and desktop crates add theirs here.
PACKAGES=(pkg-config cmake libasound2-dev libfontconfig1-dev libfreetype-dev libxkbcommon-dev)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: not a Debian-like system; please install: ${missing[*]}" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
