#!/bin/sh
# Host prerequisites of gpubox's simulated nodes (gpubox sim) on Debian/Ubuntu. Idempotent:
# installs only what is missing and runs apt-get update only when something is.
#   debootstrap        builds the Debian 13 base root file system (once, cached)
#   systemd-container  systemd-nspawn boots the simulated nodes
#   zstd               packs and unpacks the cached base
#   openssh-client     ssh / ssh-keygen: keys and the way in
#   gcc, libc6-dev     build the simulated libnvidia-ml.so.1 (and the stand-in CUDA stubs)
#   gpg, gpg-agent     sign the stand-in CUDA apt repository (dpkg-deb, in dpkg, builds it)
#   chromium           headless: the tests render gpubox's HTML report and check its DOM
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "host-setup.sh: run as root (apt-get, debootstrap and systemd-nspawn need it)" >&2
    exit 1
fi

missing=""
PACKAGES="debootstrap systemd-container zstd openssh-client gcc libc6-dev gpg gpg-agent chromium"
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing="$missing $pkg"
done

if [ -z "$missing" ]; then
    echo "host-setup.sh: all present ($PACKAGES)"
else
    echo "host-setup.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    apt-get install -y -qq --no-install-recommends $missing
fi

