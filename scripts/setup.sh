#!/usr/bin/env bash
# Install live3dpe with every extra. torch is pinned to 2.13.0 here only to pick the local CPU wheel
# (a looser spec would pull GBs of CUDA packages); the package itself accepts any torch >= 2.3.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[web,train,bench,eval,virtualcam,serve,test]"
