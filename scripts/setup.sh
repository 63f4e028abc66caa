#!/usr/bin/env bash
# Installs every Debian package Cairn's build, tests, demo and benchmarks need.
# Idempotent: does nothing (no apt-get at all) when everything is present.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format clang-tidy
  libabsl-dev libboost-dev nlohmann-json3-dev libsqlite3-dev libssl-dev libspdlog-dev libfmt-dev
  libcli11-dev libyaml-cpp-dev libzstd-dev libsimdjson-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pytest sqlite3 curl
  openssl git git-lfs time
  # executors: the local sandbox and a real single-node Slurm for tests
  slurm-wlm munge bubblewrap
  # demo (example training script)
  python3-sklearn python3-numpy
  # model serving: XGBoost (C API), TorchScript (libtorch + fast BLAS), model fixtures in Python
  libxgboost-dev python3-xgboost python3-torch libtorch-dev libopenblas0-openmp
  # benchmarks: the hand-made alternative a model server is compared with
  python3-flask gunicorn
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
