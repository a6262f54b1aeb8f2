#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the venv set-up and offscreen rendering need, only
# when one is missing (a fast no-op otherwise). Needs root (or sudo) to install.
set -euo pipefail
pkgs=(python3-dev python3-venv cmake g++ make
      libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libosmesa6 iproute2 procps)
command -v dpkg-query >/dev/null || { echo "apt: not a Debian/Ubuntu system; make sure these are installed: ${pkgs[*]}"; exit 0; }
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "apt: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
