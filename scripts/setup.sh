#!/usr/bin/env bash
# Set up a virtualenv with assistant, its distill and serve extras and dev tools.
# The llama-cpp-python wheel is built once and cached under ~/.cache/assistant/wheels,
# so a second setup takes seconds instead of ~10 minutes of compiling llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${ASSISTANT_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
LLAMA_CPP_VERSION="0.3.36"
TORCH_VERSION="2.13.0"
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/assistant/wheels"
EXTRAS="${ASSISTANT_EXTRAS:-distill,serve,dev}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip wheel >/dev/null

# llama.cpp's native build uses AMX when the CPU advertises it; virtual machines that advertise AMX without
# enabling it then die with SIGILL (tileloadd) on the first batched matmul. Build without AMX there; the wheel
# cache is keyed to the build flags so a wheel built with other flags is never reused.
native_defines=$(echo | "${CC:-cc}" -march=native -dM -E - 2>/dev/null || true)
if [[ "$native_defines" == *__AMX_TILE__* ]]; then
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
  export CMAKE_ARGS="$CMAKE_ARGS -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'"
fi
WHEELS="$WHEELS/$(printf '%s' "${CMAKE_ARGS:-}" | sha256sum | cut -c1-12)"
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  say "building llama-cpp-python $LLAMA_CPP_VERSION once (compiles llama.cpp, ~10 min on 2 cores; cached in $WHEELS)"
  "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"
fi
"${PIP[@]}" install --find-links "$WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION"

if [[ "$EXTRAS" == *distill* ]]; then
  # The CPU build of torch lies on disk here; an unpinned torch would pull a multi-GB CUDA build.
  "${PIP[@]}" install "torch==$TORCH_VERSION" || {
    say "torch==$TORCH_VERSION not available; installing the CPU build from the PyTorch index"
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  }
fi

say "installing assistant[$EXTRAS]"
"${PIP[@]}" install --find-links "$WHEELS" -e ".[$EXTRAS]"
say "ready: $VENV/bin/assistant"
