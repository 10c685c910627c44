#!/usr/bin/env bash
# System tools for the deployment tests (Debian/Ubuntu), idempotent:
#   promtool, prometheus  <- prometheus        (config/rules checks, real Prometheus server test)
#   docker-compose        <- docker-compose    (docker-compose config; no Docker engine needed)
#   chromium, chromedriver<- chromium chromium-driver (headless live-page test)
# Installs only what is missing, and only as root with apt-get; otherwise prints what
# is missing and exits 0 (the tests then skip, or fail when CI=true).
#   --check   only report, never install
set -euo pipefail

CHECK_ONLY=0
[[ ${1-} == --check ]] && CHECK_ONLY=1

declare -A PKG=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [docker-compose]=docker-compose
  [chromium]=chromium
  [chromedriver]=chromium-driver
)
# Packages installed without their Recommends (docker-compose would pull docker.io,
# containerd and iptables, useless here: the tests only run `docker-compose config`).
NO_RECOMMENDS=" prometheus docker-compose "

missing_tools=()
missing_pkgs=()
for tool in promtool prometheus docker-compose chromium chromedriver; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing_tools+=("$tool")
    pkg=${PKG[$tool]}
    [[ " ${missing_pkgs[*]-} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
  fi
done

if [[ ${#missing_tools[@]} -eq 0 ]]; then
  echo "system deps: all present (promtool prometheus docker-compose chromium chromedriver)"
  exit 0
fi

if [[ $CHECK_ONLY -eq 1 ]] || [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system deps: missing ${missing_tools[*]}" >&2
  echo "  install with: sudo apt-get install ${missing_pkgs[*]}  (Debian/Ubuntu)" >&2
  echo "  tests needing them are skipped (they fail when CI=true)" >&2
  exit 0
fi

plain=() lean=()
for pkg in "${missing_pkgs[@]}"; do
  if [[ $NO_RECOMMENDS == *" $pkg "* ]]; then lean+=("$pkg"); else plain+=("$pkg"); fi
done
echo "system deps: installing ${missing_pkgs[*]} (for ${missing_tools[*]})"
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt_quiet() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "system deps: failed: $*" >&2
    exit 1
  fi
}
apt_quiet apt-get update -qq
if [[ ${#lean[@]} -gt 0 ]]; then
  apt_quiet apt-get install -y -qq --no-install-recommends "${lean[@]}"
fi
if [[ ${#plain[@]} -gt 0 ]]; then
  apt_quiet apt-get install -y -qq "${plain[@]}"
fi

still=()
for tool in "${missing_tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || still+=("$tool")
done
if [[ ${#still[@]} -gt 0 ]]; then
  echo "system deps: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "system deps: installed ${missing_pkgs[*]}"
