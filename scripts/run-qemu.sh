#!/bin/sh
# Boot an image directory under QEMU with the console on this terminal.
#
# Usage: scripts/run-qemu.sh [IMAGE_DIR]   (default out/image)
#
# Devices are the ones in docs/architecture.md ("Host ↔ guest"): the API port org.berth.api
# is exposed at out/run/api.sock, init's control port org.berth.init at out/run/init.sock (and the test agent port at out/run/test.sock for test
# images). QEMU runs under TCG (KVM hangs on our machines), with -nographic: the serial
# console and QEMU's monitor share the terminal; Ctrl-a x quits, Ctrl-a c toggles the monitor.
# The guest gets a virtio NIC on QEMU's user network (DHCP, host loopback at 10.0.2.2): without
# `-nic` QEMU adds an e1000, which the image's cloud kernel has no driver for.
# Environment: BERTH_RUN_DIR (default out/run), BERTH_QEMU_MEM (MiB, default 512), QEMU_EXTRA.
set -eu

checkout=$(cd "$(dirname "$0")/.." && pwd -P)
image=${1:-$checkout/out/image}
run_dir=${BERTH_RUN_DIR:-$checkout/out/run}
mem=${BERTH_QEMU_MEM:-512}

for f in vmlinuz initramfs.img cmdline; do
    if [ ! -f "$image/$f" ]; then
        echo "run-qemu: $image/$f is missing; build the image first (make image)" >&2
        exit 1
    fi
done

mkdir -p "$run_dir"
rm -f "$run_dir/api.sock" "$run_dir/init.sock" "$run_dir/test.sock"

set -- -accel tcg -nographic -no-reboot -m "$mem" \
    -nic user,model=virtio-net-pci \
    -kernel "$image/vmlinuz" -initrd "$image/initramfs.img" -append "$(cat "$image/cmdline")" \
    -device virtio-serial-pci,id=vser0 \
    -chardev "socket,id=api,path=$run_dir/api.sock,server=on,wait=off" \
    -device virtserialport,bus=vser0.0,chardev=api,name=org.berth.api \
    -chardev "socket,id=init,path=$run_dir/init.sock,server=on,wait=off" \
    -device virtserialport,bus=vser0.0,chardev=init,name=org.berth.init
if [ -f "$image/manifest.json" ] && grep -q '"test_image": *true' "$image/manifest.json"; then
    set -- "$@" \
        -chardev "socket,id=test,path=$run_dir/test.sock,server=on,wait=off" \
        -device virtserialport,bus=vser0.0,chardev=test,name=org.berth.test
fi

berthctl=${CARGO_TARGET_DIR:-$checkout/target}/x86_64-unknown-linux-gnu/release/berthctl
cat >&2 <<MSG
run-qemu: booting $image (console below; Ctrl-a x quits QEMU).
run-qemu: from a second terminal, reach the API with:
    $berthctl --address $run_dir/api.sock version
    $berthctl --init-address $run_dir/init.sock system status
MSG

# shellcheck disable=SC2086 # QEMU_EXTRA is a list of extra arguments
exec qemu-system-x86_64 "$@" ${QEMU_EXTRA:-}
