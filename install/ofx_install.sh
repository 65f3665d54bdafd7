#!/usr/bin/env bash
# Install (or with --uninstall remove) the FaceRestore OpenFX bundle built by set-up.
#   bash install/ofx_install.sh [--dest DIR] [--python PATH] [--uninstall]
# Destination: --dest, else the first folder in $OFX_PLUGIN_PATH, else the OS default
# (/usr/OFX/Plugins on Linux, /Library/OFX/Plugins on macOS). --python names the interpreter
# (a venv's bin/python with facerestore installed) that the installed bundle starts its worker
# with; it is written into the bundle's Contents/Resources/worker.json, so a studio can build
# once and install on a shared path with Python anywhere. Default: the one the build named.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=ofx_bridge/build/FaceRestore.ofx.bundle
dest="" python="" uninstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    *) echo "ofx_install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$dest" ]; then
  if [ -n "${OFX_PLUGIN_PATH:-}" ]; then
    dest="${OFX_PLUGIN_PATH%%:*}"
  elif [ "$(uname)" = Darwin ]; then
    dest=/Library/OFX/Plugins
  else
    dest=/usr/OFX/Plugins
  fi
fi
if [ "$uninstall" = 1 ]; then
  rm -rf "$dest/FaceRestore.ofx.bundle"
  echo "removed $dest/FaceRestore.ofx.bundle"
  exit 0
fi
[ -f "$bundle/Contents/Linux-x86-64/FaceRestore.ofx" ] || { echo "ofx_install.sh: build the bundle first (install/setup.sh)" >&2; exit 2; }
if [ -n "$python" ]; then
  "$python" -c "import facerestore.ofx_bridge.worker" 2>/dev/null \
    || { echo "ofx_install.sh: $python cannot import facerestore (give a venv's bin/python with facerestore installed)" >&2; exit 2; }
fi
mkdir -p "$dest"
rm -rf "$dest/FaceRestore.ofx.bundle.partial"
cp -R "$bundle" "$dest/FaceRestore.ofx.bundle.partial"
if [ -n "$python" ]; then
  "$python" install/worker_json.py "$python" >"$dest/FaceRestore.ofx.bundle.partial/Contents/Resources/worker.json"
fi
rm -rf "$dest/FaceRestore.ofx.bundle"
mv "$dest/FaceRestore.ofx.bundle.partial" "$dest/FaceRestore.ofx.bundle"
echo "installed $dest/FaceRestore.ofx.bundle (worker: $(sed -n 's/.*"command": //p' "$dest/FaceRestore.ofx.bundle/Contents/Resources/worker.json"))"
