#!/usr/bin/env bash
# Builds the tiny test guest from Debian packages: a bootable disk image (MBR, one FAT
# partition with SYSLINUX, Debian's kernel and a busybox initramfs) that prints its boot
# line on the serial console, mounts its cloud-init NoCloud drive (`cidata`), takes the
# hostname from it, configures its NIC from the drive's network-config (the address of the
# NIC whose MAC it names, and the default route), powers off or restarts on ACPI, and opens
# a shell on ttyS0.
#
#   build-tiny-guest.sh OUT_DIR    writes OUT_DIR/tiny-test.qcow2 (kept if up to date)
#
# Needs: apt-get (to download, not install, linux-image-amd64 and busybox-static), cpio,
# gzip, sfdisk (fdisk), mkfs.vfat (dosfstools), mtools, syslinux, syslinux-common,
# qemu-img. No mounts, loop devices or root rights: the FAT file system is written with
# mtools and spliced into the disk with dd.
set -euo pipefail

out="${1:?usage: build-tiny-guest.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
image="$out/tiny-test.qcow2"
stamp="$out/tiny-test.stamp"

kernel_pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')"
[ -n "$kernel_pkg" ] || { echo "apt-cache knows no linux-image-amd64; run apt-get update" >&2; exit 1; }
want="$(sha256sum "$0" | cut -c1-16) $kernel_pkg"
if [ -f "$image" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

work="$(mktemp -d "$out/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# Downloaded as files (never installed on this machine); apt's sandbox user cannot write here.
apt-get download -q -o APT::Sandbox::User=root "$kernel_pkg" busybox-static >/dev/null
dpkg-deb -x linux-image-*.deb kernel
dpkg-deb -x busybox-static_*.deb busybox
release="$(ls kernel/lib/modules)"

# The initramfs: busybox, the modules that reach the config drive, the virtio NIC and the
# ACPI button (what the kernel has built in is absent from its modules, and skipped).
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,etc/acpi/PWRF,cidata,root,tmp,var/log,var/run}
cp busybox/bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
modules="kernel/drivers/ata kernel/drivers/scsi kernel/drivers/cdrom kernel/fs/isofs
  kernel/drivers/acpi/button.ko kernel/drivers/input/evdev.ko kernel/drivers/virtio
  kernel/drivers/net/virtio_net.ko kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko"
for path in $modules; do
  [ -e "kernel/lib/modules/$release/$path" ] || continue
  mkdir -p "$root/lib/modules/$release/$(dirname "$path")"
  cp -r "kernel/lib/modules/$release/$path" "$root/lib/modules/$release/$path"
done
cp kernel/lib/modules/"$release"/modules.{order,builtin} "$root/lib/modules/$release/"
"$root/bin/busybox" depmod -b "$root" "$release"

cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1: mount what busybox needs, then hand over to busybox init (inittab below).
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
exec /bin/init
EOF
cat >"$root/etc/inittab" <<'EOF'
::sysinit:/etc/rc.boot
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/bin/reboot
::shutdown:/bin/echo "tiny-guest: going down"
EOF
cat >"$root/etc/rc.boot" <<'EOF'
#!/bin/sh
echo "tiny-guest: booted, kernel $(uname -r)"
for module in evdev button ahci sr_mod isofs; do modprobe "$module"; done
# The ACPI power button (virsh shutdown, and the first half of virsh reboot) powers off.
acpid -c /etc/acpi
n=0
while [ ! -b /dev/sr0 ] && [ "$n" -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
if mount -t iso9660 -o ro /dev/sr0 /cidata 2>/dev/null; then
  name="$(sed -n 's/^local-hostname: *//p' /cidata/meta-data)"
  [ -n "$name" ] && hostname "$name"
  keys="$(grep -c 'ssh-' /cidata/user-data /cidata/meta-data | awk -F: '{s += $2} END {print s + 0}')"
  echo "tiny-guest: cloud-init drive read: hostname $(hostname), $keys ssh keys"
  if [ -f /cidata/network-config ]; then
    for module in virtio_pci virtio_net; do modprobe "$module" 2>/dev/null; done
    config=/cidata/network-config
    mac="$(sed -n 's/^ *macaddress: *"\{0,1\}\([0-9a-f:]*\)"\{0,1\}$/\1/p' "$config" | head -1)"
    addr="$(sed -n 's/^ *- *\([0-9.]*\/[0-9]*\)$/\1/p' "$config" | head -1)"
    gateway="$(sed -n 's/^ *via: *//p' "$config" | head -1)"
    dev=""
    n=0
    # Wait for the driver only if there is an Ethernet controller on the PCI bus at all.
    limit=50
    grep -qs 0x020000 /sys/bus/pci/devices/*/class || limit=0
    while true; do
      for d in /sys/class/net/*; do [ "$(cat "$d/address")" = "$mac" ] && dev="${d##*/}"; done
      [ -z "$dev" ] && [ "$n" -lt "$limit" ] || break
      sleep 0.2
      n=$((n + 1))
    done
    if [ -n "$dev" ]; then
      ip link set "$dev" up
      ip addr add "$addr" dev "$dev"
      [ -z "$gateway" ] || ip route add default via "$gateway"
      echo "tiny-guest: network $dev $addr"
    else
      echo "tiny-guest: no NIC with MAC $mac"
    fi
  fi
else
  echo "tiny-guest: no cloud-init drive"
fi
echo "tiny-guest: ready"
EOF
printf '#!/bin/sh\npoweroff\n' >"$root/etc/acpi/PWRF/00000080"
echo 'export PS1="$(hostname):\w# "' >"$root/etc/profile"
chmod +x "$root/init" "$root/etc/rc.boot" "$root/etc/acpi/PWRF/00000080"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >initrd.gz

# The boot partition: FAT with SYSLINUX, the kernel and the initramfs.
cat >syslinux.cfg <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 quiet panic=5
EOF
part_mib=64
truncate -s "${part_mib}M" part.img
mkfs.vfat -n TINYGUEST part.img >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -i part.img kernel/boot/vmlinuz-"$release" ::/vmlinuz
mcopy -i part.img initrd.gz ::/initrd.gz
mcopy -i part.img syslinux.cfg ::/syslinux.cfg
syslinux --install part.img

# The disk: an MBR with SYSLINUX's boot code and one bootable partition at 1 MiB.
truncate -s "$((part_mib + 1))M" disk.img
echo 'start=2048, type=6, bootable' | sfdisk -q disk.img
dd if=part.img of=disk.img bs=1M seek=1 conv=notrunc status=none
dd if=/usr/lib/syslinux/mbr/mbr.bin of=disk.img bs=440 count=1 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 disk.img "$work/tiny-test.qcow2"
mv "$work/tiny-test.qcow2" "$image"
echo "$want" >"$stamp"
echo "built $image ($kernel_pkg, busybox $("$root/bin/busybox" | head -1 | awk '{print $2}'))"
