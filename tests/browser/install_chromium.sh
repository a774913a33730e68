#!/bin/sh
# Chromium for the browser tests (tests/browser): installed with apt-get when it is missing
# and this runs as root; otherwise one line says what to do. Never fails: without Chromium
# the browser tests are skipped, naming what to install.
for name in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser tests: no Chromium; they are skipped (install it: apt-get install chromium)"
  exit 0
fi
echo "browser tests: installing Chromium (apt-get install chromium)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
  # the package lists may be missing or stale: refresh them once, then try again
  apt-get update -qq >/dev/null 2>&1
  if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
    echo "browser tests: apt-get install chromium failed; they are skipped"
  fi
fi
exit 0
