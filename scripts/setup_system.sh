#!/usr/bin/env bash
# Installs the Debian packages mpitalk needs on a fresh machine (root, no GPU, no display).
# Idempotent: packages already present are skipped; safe to run again.
#   libegl1 libegl-mesa0 libgl1-mesa-dri : headless OpenGL through EGL on Mesa llvmpipe (moderngl)
#   libusb-1.0-0                         : open3d imports it
#   xvfb                                 : a virtual display for the interactive viewer's tests
#   strace                               : the test that a render opens no network socket
#                                          (tests/test_hardening.py; skipped without it)
#   chromium                             : a real browser (headless, WebGL2 on SwiftShader) for
#                                          the headset web page's tests
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libusb-1.0-0 xvfb strace chromium)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup_system: all system packages present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup_system: installed ${missing[*]}"
