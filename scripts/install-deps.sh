#!/bin/sh
# Install what building and booting berth images needs on a Debian 12 host. Idempotent: it
# only touches apt when a package is missing, and runs `apt-get update` at most once.
#
# - qemu-system-x86: boots images (make run, make test); TCG only, no KVM needed.
# - erofs-utils, cpio, kmod: berth-image builds the root image, the initramfs and modules.dep.
# - libc6-dev: the static glibc (libc.a) the static build links.
# - dpkg-dev, xz-utils, zstd, ca-certificates: fetching and unpacking the kernel .deb.
# - e2fsprogs: mke2fs/e2fsck copied into the root image (host_tools); gdisk (sgdisk): the QEMU
#   tests partition state disks with a GPT label.
# - ipxe-qemu: the virtio NIC's iPXE ROM for the PXE scenario (qemu-tests/tests/pxe.rs).
# - libseccomp-dev: libseccomp.a, linked statically into berth for the container executor;
#   busybox-static: the container tests build a busybox image from it.
# - umoci, skopeo, containerd, runc: the unpack oracle test builds images with umoci and
#   compares berth's unpacked trees with containerd's.
# - docker-registry, apache2-utils (htpasswd -B), openssl, iproute2, iptables: the registry
#   pull tests run a real registry on loopback with a self-signed CA and htpasswd auth, and
#   drop SYNs to a dead mirror inside a network namespace of their own.
# - systemd-boot-efi (EFI stub + systemd-boot), binutils (objcopy), dosfstools + mtools (the
#   ESP), qemu-utils (qemu-img: qcow2), ovmf (UEFI firmware for QEMU): berth-image uki/disk
#   and the UEFI scenario.
# - containernetworking-plugins: berth-cri's pod networking (bridge, host-local, loopback,
#   portmap in /usr/lib/cni), used by the CRI host tests inside a network namespace of their
#   own. Go (for scripts/build-cri-tools.sh: crictl, critest) comes from the machine's
#   toolchain, not from apt: Debian 12's Go is too old for cri-tools 1.37.
# - nginx-core: the web server inside the local equivalents of critest's nginx images
#   (copied with its libraries into an image built with umoci; never run on the host).
# - dkms, zfsutils-linux (Debian contrib): berth-image --zfs builds zfs.ko with `dkms build`
#   from the zfs-dkms source it fetches with `apt-get download` (never installed here), and
#   copies zpool/zfs into the image. `contrib` is added to the host's existing Debian apt
#   sources (same archive, same suites) when missing.
#
# The host's apt sources may list unreachable third-party repositories: errors from
# `apt-get update` are reported but tolerated, since Debian's own lists still refresh.
set -eu

PACKAGES="qemu-system-x86 erofs-utils kmod cpio libc6-dev dpkg-dev xz-utils zstd ca-certificates e2fsprogs gdisk umoci skopeo containerd runc dnsmasq-base docker-registry apache2-utils openssl iproute2 iptables ipxe-qemu libseccomp-dev busybox-static containernetworking-plugins nginx-core systemd-boot-efi binutils dosfstools mtools qemu-utils ovmf dkms zfsutils-linux"

# ZFS lives in Debian's contrib component: add it to the Debian entries that list only main
# (deb822 .sources stanzas and one-line sources.list entries). Root only; a no-op when present.
add_contrib() {
    [ "$(id -u)" -eq 0 ] || return 0
    changed=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        grep -qE '^URIs:.*debian' "$f" || continue
        if grep -E '^Components:' "$f" | grep -qv contrib; then
            sed -i -E '/^Components:/{/contrib/!s/$/ contrib/}' "$f"
            changed="$changed $f"
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        if grep -E '^deb(-src)? .*debian.* main' "$f" | grep -qv contrib; then
            sed -i -E '/^deb(-src)? .*debian.* main/{/contrib/!s/$/ contrib/}' "$f"
            changed="$changed $f"
        fi
    done
    if [ -n "$changed" ]; then
        echo "install-deps: added contrib to$changed" >&2
        apt-get update || echo "install-deps: apt-get update reported errors; continuing" >&2
    fi
}
add_contrib

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages:$missing; run this script as root" >&2
        exit 1
    fi
    echo "install-deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update; then
        echo "install-deps: apt-get update reported errors (unreachable repositories?); continuing" >&2
    fi
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y --no-install-recommends $missing
else
    echo "install-deps: system packages present" >&2
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps: cargo not found. Install a Rust toolchain >= 1.85 with rustup" >&2
    echo "  (Debian 12's own rustc is too old), then open a new shell or run:" >&2
    echo "  . \"\$HOME/.cargo/env\"" >&2
    exit 1
fi
echo "install-deps: $(cargo --version)" >&2
