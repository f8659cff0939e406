#!/usr/bin/env bash
# Refreshes the third-party browser libraries of the web client (web/vendor/)
# from their npm packages. Only this script needs npm; building chatd does not:
# the vendored files are committed and embedded in the binary.
#
#   scripts/vendor-web.sh            # the version pinned below
#   MQTT_VERSION=5.16.0 scripts/vendor-web.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MQTT_VERSION=${MQTT_VERSION:-5.16.0}
out=web/vendor/mqtt.min.js

command -v npm >/dev/null 2>&1 || { echo "vendor-web: npm is required to download the mqtt package" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# npm pack fetches the published tarball exactly as the registry serves it
# (integrity-checked), without installing anything or running its scripts.
(cd "$tmp" && npm pack --silent "mqtt@${MQTT_VERSION}" >/dev/null)
tar -xzf "$tmp"/mqtt-*.tgz -C "$tmp"
pkg="$tmp/package"
[ -f "$pkg/dist/mqtt.min.js" ] || { echo "vendor-web: mqtt@${MQTT_VERSION} has no dist/mqtt.min.js" >&2; exit 1; }
version=$(node -p "require('$pkg/package.json').version" 2>/dev/null || echo "$MQTT_VERSION")

mkdir -p web/vendor
{
	echo "/*! MQTT.js ${version} (npm package mqtt, dist/mqtt.min.js), vendored by scripts/vendor-web.sh."
	echo " * https://github.com/mqttjs/MQTT.js — license:"
	sed 's/^/ * /; s/\*\//* \//g' "$pkg/LICENSE.md"
	echo " */"
	cat "$pkg/dist/mqtt.min.js"
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "vendor-web: $out is MQTT.js ${version} ($(wc -c <"$out") bytes)"
