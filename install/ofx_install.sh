#!/usr/bin/env bash
# Install (or with --uninstall remove) the FaceRestore OpenFX bundle built by set-up.
# Destination: the first folder in $OFX_PLUGIN_PATH, else the OS default
# (/usr/OFX/Plugins on Linux, /Library/OFX/Plugins on macOS).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=ofx_bridge/build/FaceRestore.ofx.bundle
if [ -n "${OFX_PLUGIN_PATH:-}" ]; then
  dest="${OFX_PLUGIN_PATH%%:*}"
elif [ "$(uname)" = Darwin ]; then
  dest=/Library/OFX/Plugins
else
  dest=/usr/OFX/Plugins
fi
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$dest/FaceRestore.ofx.bundle"
  echo "removed $dest/FaceRestore.ofx.bundle"
  exit 0
fi
[ -f "$bundle/Contents/Linux-x86-64/FaceRestore.ofx" ] || { echo "ofx_install.sh: build the bundle first (install/setup.sh)" >&2; exit 2; }
mkdir -p "$dest"
rm -rf "$dest/FaceRestore.ofx.bundle.partial"
cp -R "$bundle" "$dest/FaceRestore.ofx.bundle.partial"
rm -rf "$dest/FaceRestore.ofx.bundle"
mv "$dest/FaceRestore.ofx.bundle.partial" "$dest/FaceRestore.ofx.bundle"
echo "installed $dest/FaceRestore.ofx.bundle"
