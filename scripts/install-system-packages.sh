#!/usr/bin/env sh
# Debian packages OpenRFT uses: bubblewrap isolates python graders, wordnet-base gives the
# meteor metric its synonyms. Installs what is missing when we can (root or sudo with apt).
set -e
missing=""
command -v bwrap >/dev/null || missing="$missing bubblewrap"
[ -d /usr/share/wordnet ] || missing="$missing wordnet-base"
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "please install:$missing" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" = "0" ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
