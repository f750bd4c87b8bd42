# Shared steps of the README's two commands. Every step is idempotent and skips work that
# is already done, so a second run starts quickly. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

APT_UPDATED=0
apt_install() { # apt_install PACKAGE... : installs the ones that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ "$APT_UPDATED" -eq 0 ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What building the portal needs: a C toolchain for SQLite, libvirt for the host agent's
# libvirt backend (headers to link; virt-xml-validate, which also needs xmllint; qemu-img
# and genisoimage for the VM overlays and config drives its tests make), iproute2, nftables
# and FRR for the DPU and switch agents' Linux backends and their packet tests, the WASM target, the exact
# wasm-bindgen CLI of Cargo.lock, Node for wasm-opt (npm binaryen 132; Debian's 108 breaks
# the bundle) and Playwright.
install_build_deps() {
  apt_install build-essential pkg-config ca-certificates brotli
  apt_install libvirt-dev libvirt-clients libxml2-utils qemu-utils genisoimage
  apt_install iproute2 nftables frr frr-pythontools
  command -v node >/dev/null 2>&1 || apt_install nodejs npm
  local node_major
  node_major="$(node --version | sed 's/^v\([0-9]*\).*/\1/')"
  if [ "$node_major" -lt 20 ]; then
    echo "error: Node.js $(node --version) is too old for Playwright and oidc-provider; install Node.js 20 or newer (e.g. from NodeSource) and run this again" >&2
    exit 1
  fi
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  local want
  want="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    step "installing wasm-bindgen-cli $want (once per machine, about 4 minutes)"
    cargo install wasm-bindgen-cli --version "=$want"   # not --locked: see reference/ecosystem.md
  fi
  if [ ! -x end2end/node_modules/.bin/wasm-opt ] || [ end2end/package-lock.json -nt end2end/node_modules/.stamp ]; then
    step "installing the end2end npm packages"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
  fi
}

# Schemathesis, the property-based tester the REST API test runs against the served OpenAPI
# document, in a virtualenv of its own under target/ (pinned; from PyPI).
SCHEMATHESIS_VERSION=4.32.5
install_schemathesis() {
  apt_install python3-venv
  local venv="$ROOT/target/schemathesis"
  if [ "$("$venv/bin/st" --version 2>/dev/null | awk '{print $3}')" != "$SCHEMATHESIS_VERSION" ]; then
    step "installing schemathesis $SCHEMATHESIS_VERSION"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  export PORTAL_TEST_SCHEMATHESIS="$venv/bin/st"
}

# What booting real guests needs (the real-guest tests and the run command's real host):
# QEMU, libvirt's daemon, and the tools the tiny test guest is built with. Debian 12's QEMU
# comes with its own qemu-utils: a newer backported qemu-utils conflicts with it and is
# replaced by Debian 12's (--allow-downgrades).
install_guest_deps() {
  apt_install cpio fdisk dosfstools mtools syslinux syslinux-common
  if ! dpkg -s qemu-system-x86 libvirt-daemon >/dev/null 2>&1; then
    step "installing QEMU and libvirtd"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    if [ "$APT_UPDATED" -eq 0 ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
    local qemu
    qemu="$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      --allow-downgrades qemu-system-x86 "qemu-utils=$qemu" libvirt-daemon libvirt-daemon-driver-qemu
  fi
}

# Starts libvirt's daemons by hand (these machines run no systemd) unless libvirtd answers.
# Without Debian's libvirt-daemon-system (which would pull in a newer systemd) nothing
# creates the `libvirt-qemu` user libvirtd looks up at start, nor a qemu.conf: guests run as
# root, as the project's own test guests.
start_libvirtd() {
  if virsh -q -c qemu:///system version >/dev/null 2>&1; then return 0; fi
  step "starting libvirtd"
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
  [ -f /etc/libvirt/qemu.conf ] || printf 'user = "root"\ngroup = "root"\n' >/etc/libvirt/qemu.conf
  mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt
  pidof virtlogd >/dev/null || virtlogd -d
  pidof libvirtd >/dev/null || libvirtd -d
  for _ in $(seq 50); do
    virsh -q -c qemu:///system version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "error: libvirtd did not answer on qemu:///system; see /var/log/libvirt/libvirtd.log" >&2
  exit 1
}

# The tiny test guest (Debian's kernel, a busybox initramfs) in the image store target/images.
build_tiny_guest() {
  step "building the tiny test guest"
  agents/host/guest/build-tiny-guest.sh target/images
}

# Prints how this machine runs guests: `kvm` if a KVM guest boots the tiny test guest to its
# first console line within 30 s, else `qemu` (TCG). In nested setups /dev/kvm may open but
# KVM guests hang early in boot. Probed once; the answer is kept in target/images/guest-virt.
guest_virt() {
  local cached=target/images/guest-virt
  if [ -f "$cached" ]; then cat "$cached"; return; fi
  local virt=qemu dir name
  if [ -r /dev/kvm ]; then
    dir="$(mktemp -d)"; name="kvm-probe-$$"
    qemu-img create -q -f qcow2 -F qcow2 -b "$ROOT/target/images/tiny-test.qcow2" "$dir/disk.qcow2"
    cat >"$dir/domain.xml" <<XML
<domain type='kvm'><name>$name</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$dir/disk.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <serial type='pty'><log file='$dir/console.log'/><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial></devices></domain>
XML
    if virsh -q -c qemu:///system create "$dir/domain.xml" >/dev/null 2>&1; then
      for _ in $(seq 60); do
        if grep -q 'tiny-guest: booted' "$dir/console.log" 2>/dev/null; then virt=kvm; break; fi
        sleep 0.5
      done
      virsh -q -c qemu:///system destroy "$name" >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
  fi
  echo "$virt" >"$cached"
  echo "$virt"
}

# Builds the browser bundle into target/site: WASM (size-optimised profile), wasm-bindgen,
# wasm-opt, brotli copies, CSS and public assets.
build_site() {
  step "building the browser bundle"
  cargo build -p portal-hydrate --lib --target wasm32-unknown-unknown --profile wasm-release
  local site=target/site pkg=target/site/pkg
  mkdir -p "$pkg"
  wasm-bindgen --target web --out-dir "$pkg" --out-name portal --no-typescript \
    target/wasm32-unknown-unknown/wasm-release/portal_hydrate.wasm
  end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    "$pkg/portal_bg.wasm" -o "$pkg/portal_bg.wasm"
  cp style/main.css "$pkg/portal.css"
  cp -r public/. "$site/"
  for f in "$pkg/portal_bg.wasm" "$pkg/portal.js" "$pkg/portal.css" "$site/vendor/xterm/xterm.js"; do
    brotli -f -q 11 "$f"
  done
  echo "bundle: $(stat -c %s "$pkg/portal_bg.wasm") bytes WASM, $(stat -c %s "$pkg/portal_bg.wasm.br") bytes brotli"
}

build_server() {
  step "building the portal server"
  cargo build -p portal-server
}
