#!/usr/bin/env bash
# Create .venv, install pixeldeid, build a small sample collection with planted identity,
# run the pipeline on it and print the summary. Output: demo-out/.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv demo || exit 1
PY="$VENV/bin/python"
PIX="$VENV/bin/pixeldeid"
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"
printf 'demo-project-key-%s\n' "do-not-use-in-production" > "$OUT/project.key"
"$PY" scripts/make_demo_collection.py "$OUT/input" || exit 1

status=0
echo "== DICOM headers (PS3.15 Annex E, tcia-like profile)"
"$PIX" dicom "$OUT/input/ct" "$OUT/input/us" -o "$OUT/release/dicom" --profile tcia-like \
  --key-file "$OUT/project.key" --layout hierarchy --export-map "$OUT/mapping.csv" || status=1
if [ -d "$OUT/input/head" ] && "$PIX" deface --help >/dev/null 2>&1; then
  echo "== defacing"
  "$PIX" deface "$OUT/input/head" -o "$OUT/release/heads" --qc || status=1
fi
if [ -d "$OUT/input/slide" ] && "$PIX" wsi --help >/dev/null 2>&1; then
  echo "== whole-slide images"
  "$PIX" wsi "$OUT/input/slide" -o "$OUT/release/slides" || status=1
fi
if "$PIX" run --help >/dev/null 2>&1; then
  echo "== the whole collection in one resumable run (configs/jobs/example.yaml)"
  "$PIX" run "$OUT/input" -o "$OUT/release/run" --config configs/jobs/example.yaml \
    --key-file "$OUT/project.key" --no-progress || status=1
  if "$PIX" verify --help >/dev/null 2>&1; then
    echo "== verify"
    "$PIX" verify "$OUT/release/run" --no-progress || status=1
  fi
  if "$PIX" report --help >/dev/null 2>&1; then
    echo "== QC report"
    "$PIX" report "$OUT/release/run" --no-progress || status=1
    echo "QC report (shows identity: keep private; opens offline): $OUT/release/run/report/index.html"
  fi
fi
echo "== result"
find "$OUT/release" -type f -not -path '*/.pixeldeid/*' | sort | head -40
echo "mapping for the data holder (keep private): $OUT/mapping.csv"
exit $status
