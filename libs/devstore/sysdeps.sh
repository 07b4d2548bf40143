#!/usr/bin/env bash
# Installs the Debian packages the system needs when they are missing:
#   run:  postgresql (the local store's backend), fonts-noto-core + fonts-noto-cjk (PDF export scripts)
#   test: + poppler-utils and unzip (export tests read PDFs/ZIPs), chromium (admin page browser tests),
#         prometheus (promtool rule tests, the alert end-to-end test), docker-compose (parses docker-compose.yml)
#   run with PTW_PROMETHEUS=1: + prometheus (make up starts one)
# Usage: sysdeps.sh run|test
set -euo pipefail
want=(postgresql fonts-noto-core fonts-noto-cjk)
[ "${1:-run}" = test ] && want+=(poppler-utils unzip chromium prometheus docker-compose)
[ "${1:-run}" = run ] && [[ "${PTW_PROMETHEUS:-}" =~ ^(1|true)$ ]] && want+=(prometheus)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "could not install ${missing[*]} (needs root and Debian's package archive)" >&2
  exit 1
fi
# Debian starts its own Prometheus service on :9090 where systemd runs; ours (make up, tests) runs
# with its own config and data, so the packaged service is turned off when this script installed it.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 && echo "disabled Debian's prometheus service (make up runs its own)" || true
fi
