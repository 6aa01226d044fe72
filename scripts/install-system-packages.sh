#!/usr/bin/env sh
# Debian packages OpenRFT uses: bubblewrap isolates python graders, wordnet-base gives the
# meteor metric its synonyms; with --with-browser also chromium, which the dashboard's browser
# tests drive through Playwright (OPENRFT_CHROMIUM, /usr/bin/chromium by default). Installs what
# is missing when we can (root or sudo with apt).
set -e
missing=""
command -v bwrap >/dev/null || missing="$missing bubblewrap"
[ -d /usr/share/wordnet ] || missing="$missing wordnet-base"
if [ "${1:-}" = "--with-browser" ]; then
    [ -x "${OPENRFT_CHROMIUM:-/usr/bin/chromium}" ] || missing="$missing chromium"
fi
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "please install:$missing" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" = "0" ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
