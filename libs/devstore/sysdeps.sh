#!/usr/bin/env bash
# Installs the Debian packages the system needs when they are missing:
#   run:  postgresql (the local store's backend), fonts-noto-core + fonts-noto-cjk (PDF export scripts)
#   test: + poppler-utils and unzip (export tests read PDFs/ZIPs), chromium (admin page browser tests)
# Usage: sysdeps.sh run|test
set -euo pipefail
want=(postgresql fonts-noto-core fonts-noto-cjk)
[ "${1:-run}" = test ] && want+=(poppler-utils unzip chromium)
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
