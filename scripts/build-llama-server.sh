#!/usr/bin/env bash
# Build llama.cpp's own server (llama-server) once, from the llama.cpp that the pinned llama-cpp-python vendors,
# for the optional served-teacher tests against it (tests/distill/test_llama_server.py find it in the cache).
# Downloads the llama-cpp-python source from PyPI; ~15 minutes on 2 cores; prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(grep -m1 '^LLAMA_CPP_VERSION=' scripts/setup.sh | cut -d'"' -f2)
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/assistant/llama-server-$VERSION"
if [ -x "$DEST/llama-server" ]; then echo "$DEST/llama-server"; exit 0; fi
say() { printf '\033[1m[llama-server]\033[0m %s\n' "$*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "downloading the llama-cpp-python $VERSION source (it vendors llama.cpp)"
.venv/bin/python -m pip download --disable-pip-version-check -q --no-binary :all: --no-deps \
  "llama-cpp-python==$VERSION" -d "$work"
tar xzf "$work/llama_cpp_python-$VERSION.tar.gz" -C "$work"
flags=()
# as scripts/setup.sh: no AMX on CPUs that advertise it without enabling it
if [[ "$(echo | "${CC:-cc}" -march=native -dM -E - 2>/dev/null || true)" == *__AMX_TILE__* ]]; then
  flags+=(-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16')
  flags+=(-DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16')
fi
say "building llama-server (static, Release; ~15 min on 2 cores)"
cmake -S "$work/llama_cpp_python-$VERSION/vendor/llama.cpp" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF "${flags[@]}" >/dev/null
cmake --build "$work/build" --target llama-server -j "$(nproc)" >/dev/null
mkdir -p "$DEST.partial"
cp "$work/build/bin/llama-server" "$DEST.partial/"
rm -rf "$DEST" && mv "$DEST.partial" "$DEST"
echo "$DEST/llama-server"
