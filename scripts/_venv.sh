# Shared by demo.sh and test.sh: create .venv and install the project.
# shellcheck shell=bash
VENV="${PIXELDEID_VENV:-.venv}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.12 python3.11 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi

_pip() {
  # pip, quiet, without the find-links noise of these machines; fails when pip fails.
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}

_check_space() {
  # Say so up front when the disk is too full for the install (pip's own error is a bare
  # "No space left on device" in the middle of it).
  local need_gb free_kb
  if [ "$1" = "test" ]; then need_gb=9; else need_gb=3; fi
  free_kb=$(df -Pk "$VENV" 2>/dev/null | awk 'NR == 2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
    echo "warning: $((free_kb / 1024)) MB free where $VENV is; installing the $1 environment" \
         "takes about $need_gb GB (torch and its libraries)" >&2
  fi
}

ensure_venv() {
  # $1: extras set, "test" or "demo"
  local extras stamp
  if [ "$1" = "test" ]; then
    extras="test,gpu,ocr,easyocr,tesseract,codecs,slides,dask,bench"
  else
    extras="gpu,ocr,codecs,slides,dask,verify,demo"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
    _pip --upgrade pip
  fi
  stamp="$VENV/.pixeldeid-$1-$(cat pyproject.toml | sha1sum | cut -c1-12)"
  if [ ! -e "$stamp" ]; then
    echo "installing pixeldeid[$extras] into $VENV"
    _check_space "$1"
    if [ "$1" = "test" ]; then
      # EasyOCR needs torchvision; torch 2.14.1 + torchvision 0.29.1 (a CUDA build that also
      # runs on the CPU) is the pair these machines install from local disk.
      _pip "torch==2.14.1" "torchvision==0.29.1" || _pip torch torchvision
    elif ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
      # CPU torch: a local CPU wheel on these machines, the PyPI one elsewhere. A torch
      # already there (the test flavour's, with its torchvision) is kept: replacing it
      # would leave torchvision without the torch it was built for.
      _pip "torch==2.13.0" || _pip torch
    fi
    _pip -e ".[$extras]"
    "$VENV/bin/python" -c "import pixeldeid, pydicom" 
    touch "$stamp"
  fi
}
