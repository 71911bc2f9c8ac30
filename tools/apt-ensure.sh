#!/usr/bin/env bash
# tools/apt-ensure.sh PACKAGE...: installs the Debian packages that are not
# installed yet (apt-get, through sudo unless root). Used by make deps,
# make fuzz and make valgrind.
set -u
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "deps: installing$missing"
$sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
