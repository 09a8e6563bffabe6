#!/usr/bin/env bash
# Runs the call-quality grid in release mode and prints the table for docs/call-quality.md.
#
# Speech comes from espeak-ng (installed from Debian if missing) and the wideband PESQ score
# from the `pesq` package on PyPI, in a virtualenv under ~/.cache. Without either, the run
# still measures concealment and latency on a synthetic speech-like signal.
#
# Extra arguments go to parley-quality, e.g. --loss 10 --jitter 20 --model random --seconds 60
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"

out=target/call-quality
mkdir -p "$out"
args=()

if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends espeak-ng >&2 || true
fi
if command -v espeak-ng >/dev/null 2>&1; then
    espeak-ng -v en-us -s 150 -w "$out/speech.wav" \
        "The quick brown fox jumps over the lazy dog. A self hosted chat keeps every message \
on your own machine. Calls should sound clear even when the network drops packets. \
Please call me back when you are home, and bring the blue folder from the office."
    args+=(--speech "$out/speech.wav")
else
    echo "call-quality: espeak-ng not available; using the synthetic speech-like signal" >&2
fi

venv="$HOME/.cache/parley-pesq"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q numpy scipy pesq >&2 || true
fi
if "$venv/bin/python" -c "import pesq, scipy" 2>/dev/null; then
    args+=(--pesq-python "$venv/bin/python")
else
    echo "call-quality: no PESQ scorer (pip install pesq scipy failed); speech quality not scored" >&2
fi

cargo build --release -q -p parley-quality
"$CARGO_TARGET_DIR/release/parley-quality" --out "$out" --json "$out/results.json" "${args[@]}" "$@"
