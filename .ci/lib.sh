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
# the bundle), wasm-split-cli and Playwright.
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
  # wasm-split-cli (crate wasm_split_cli_support, the splitter cargo-leptos --split links)
  # cuts the lazy pages out of the browser bundle; its own lock file builds with Rust 1.95.
  local split=0.2.4
  if ! cargo install --list | grep -qx "wasm_split_cli_support v$split:"; then
    step "installing wasm-split-cli $split (once per machine, about a minute)"
    cargo install wasm_split_cli_support --version "=$split" --features build-binary --locked
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

# Builds the browser bundle into target/site: WASM (size-optimised profile, linked with its
# relocations), split by wasm-split-cli into the main module and one chunk per lazy page
# (app/src/pages/lazy.rs) plus chunks of code those pages share, wasm-bindgen on the main
# module, wasm-opt on every module, brotli copies, CSS and public assets. Prints the size
# of the main module and what each lazy page adds.
build_site() {
  step "building the browser bundle"
  # `--emit-relocs` keeps the linker's relocations, which wasm-split needs to follow calls;
  # given as --config so that it adds to .cargo/config.toml's flags instead of replacing them.
  # Two of rustc's size flags, unstable, so let through on this stable compiler by
  # RUSTC_BOOTSTRAP for this build alone: panics carry no file, line and column
  # (`location-detail`, -8 KB brotli), and derived `Debug` prints only the type's name
  # (`fmt-debug`, -3 KB); the page never shows either.
  RUSTC_BOOTSTRAP=1 cargo build -p portal-hydrate --lib --target wasm32-unknown-unknown \
    --profile wasm-release --config \
    'build.rustflags=["-Clink-args=--emit-relocs","-Zlocation-detail=none","-Zfmt-debug=shallow"]'
  local site=target/site pkg=target/site/pkg split=target/wasm-split
  mkdir -p "$pkg"
  rm -rf "$split"
  rm -f "$pkg"/*.wasm "$pkg"/*.wasm.br "$pkg"/__wasm_split*
  wasm-split-cli --target web --out-name portal \
    target/wasm32-unknown-unknown/wasm-release/portal_hydrate.wasm "$split"
  # The main module imports its chunks' loaders from ./__wasm_split.js, which imports
  # initSync from ./portal.js: wasm-bindgen keeps the linker's exports the chunks link to.
  wasm-bindgen --target web --keep-lld-exports --no-demangle --out-dir "$pkg" --out-name portal \
    --no-typescript "$split/portal.wasm"
  rm "$split/portal.wasm"
  cp "$split"/* "$pkg/"
  local f
  for f in "$pkg"/*.wasm; do
    # wasm-split-cli writes label names, which binaryen does not know and warns about.
    end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      "$f" -o "$f" 2>&1 | sed '/^warning: unknown name subsection/d' >&2
  done
  cp style/main.css "$pkg/portal.css"
  cp -r public/. "$site/"
  for f in "$pkg"/*.wasm "$pkg"/*.js "$pkg/portal.css" "$site/vendor/xterm/xterm.js"; do
    brotli -f -q 11 "$f"
  done
  # Per lazy page: its own module and the shared chunks loaded with it (from the loader).
  node - "$pkg" <<'JS'
const fs = require("fs"), path = require("path");
const pkg = process.argv[2];
const br = (f) => fs.statSync(path.join(pkg, `${f}.br`)).size;
const js = fs.readFileSync(path.join(pkg, "__wasm_split.js"), "utf8");
const chunks = {};
for (const m of js.matchAll(/^const (__chunk_\d+) = makeLoad\(\(\) => \{\s*const src = fetch\(new URL\("\.\/([^"]+)"/gm)) chunks[m[1]] = m[2];
const main = br("portal_bg.wasm"), pad = (n, w) => String(n).padStart(w);
let pages = 0;
for (const m of js.matchAll(/^export const __wasm_split_load___(\w+?)_\d+ = wrapAsyncCb\(makeLoad\(([\s\S]*?), \[([^\]]*)\]\)\);?$/gm)) {
  const own = (m[2].match(/"\.\/([^"]+\.wasm)"/) || [])[1];
  const deps = m[3].split(",").map((d) => d.trim()).filter(Boolean).map((d) => chunks[d]);
  const ownSize = own ? br(own) : 0, depSize = deps.reduce((n, f) => n + br(f), 0);
  console.log(`lazy page ${m[1].padEnd(20)} ${pad(ownSize, 6)} + ${pad(deps.length, 2)} shared chunks ${pad(depSize, 6)}` +
    ` = ${pad(ownSize + depSize, 6)} bytes brotli (${main + ownSize + depSize} with the main module)`);
  pages++;
}
if (pages === 0) { console.error("error: no lazy pages found in __wasm_split.js"); process.exit(1); }
JS
  local total=0 n=0
  for f in "$pkg"/*.wasm.br; do
    [ "$f" = "$pkg/portal_bg.wasm.br" ] && continue
    total=$((total + $(stat -c %s "$f"))); n=$((n + 1))
  done
  echo "bundle: main module $(stat -c %s "$pkg/portal_bg.wasm") bytes WASM," \
    "$(stat -c %s "$pkg/portal_bg.wasm.br") bytes brotli; $n lazy modules $total bytes brotli in all"
}

# Fails when the main module grew more than 5 % over .ci/bundle-budget, or the JavaScript
# glue (wasm-bindgen's and wasm-split's loaders) passed 20 KB brotli (DESIGN §6, B9).
check_bundle_budget() {
  local pkg=target/site/pkg budget actual glue
  budget="$(sed -n 's/^main_module_brotli_bytes=//p' .ci/bundle-budget)"
  actual="$(stat -c %s "$pkg/portal_bg.wasm.br")"
  glue=$(($(stat -c %s "$pkg/portal.js.br") + $(stat -c %s "$pkg/__wasm_split.js.br")))
  if [ "$actual" -gt $((budget * 105 / 100)) ]; then
    echo "error: the browser bundle's main module is $actual bytes brotli, more than 5 % over" \
      "the $budget bytes in .ci/bundle-budget; move the new code into a lazy page" \
      "(app/src/pages/lazy.rs) or make it smaller." >&2
    return 1
  fi
  if [ "$glue" -gt 20000 ]; then
    echo "error: the bundle's JavaScript glue is $glue bytes brotli, over 20,000." >&2
    return 1
  fi
  echo "bundle budget: main module $actual bytes brotli (recorded $budget, limit +5 %), glue $glue bytes"
}

build_server() {
  step "building the portal server"
  cargo build -p portal-server
}
