#!/usr/bin/env bash
# Set up a fresh machine: Debian packages for headless GL, a virtual environment with torch
# (the CPU build where there is no NVIDIA GPU), the project and its test tools.
# Idempotent: re-running only installs what is missing. Override the venv with VENV=path.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || need_apt+=(libegl1 libegl-mesa0)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || ls /usr/lib/*/dri/*swrast* >/dev/null 2>&1 || need_apt+=(libgl1-mesa-dri)
command -v Xvfb >/dev/null || need_apt+=(xvfb)
command -v xdotool >/dev/null || need_apt+=(xdotool)
if [ "${SETUP_TEST:-0}" = 1 ]; then  # independent readers used by the tests: Chromium (three.js) and node tools
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v npm >/dev/null || need_apt+=(nodejs npm)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    echo "setup: warning: not root and no sudo; install these yourself: apt-get install ${need_apt[*]}" >&2
  else
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing torch with CUDA and gsplat"
    "${PIP[@]}" install torch
    GPU_EXTRA=",cuda"
  else
    # Never pull several GB of CUDA wheels on a machine without a GPU: pin the CPU build.
    echo "setup: no GPU: installing the CPU build of torch (${TORCH_CPU_SPEC:-torch==2.13.0})"
    "${PIP[@]}" install "${TORCH_CPU_SPEC:-torch==2.13.0}" ${TORCH_CPU_INDEX:+--index-url "$TORCH_CPU_INDEX"}
  fi
fi
"${PIP[@]}" install -e ".[all,dev${GPU_EXTRA:-}]"
if [ "${SETUP_TEST:-0}" = 1 ] && command -v npm >/dev/null; then
  NODE_PKGS=(gltf-validator@2.0.0-dev.3.10 three@0.187.0 @playcanvas/splat-transform@3.7.0 playwright-core@1.65.1)
  have=1
  for p in gltf-validator three @playcanvas/splat-transform playwright-core; do [ -d ".node/node_modules/$p" ] || have=0; done
  if [ $have = 0 ]; then
    echo "setup: installing node test tools into .node/: ${NODE_PKGS[*]}"
    npm install --prefix .node --no-audit --no-fund --loglevel=error "${NODE_PKGS[@]}" >/dev/null || \
      echo "setup: warning: npm install failed; tests that need these tools will skip" >&2
  fi
fi
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
