#!/usr/bin/env bash
# Refresh the vendored chart library (uPlot, MIT) from the npm registry.
# The ui serves these files itself: no CDN at run time, no front-end build step.
#   services/ui/refresh_vendor.sh [version]      (default: the pinned one below)
set -euo pipefail
VERSION="${1:-1.6.32}"
DEST="$(cd "$(dirname "$0")" && pwd)/static"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "uplot@$VERSION" >/dev/null && tar xzf "uplot-$VERSION.tgz")
mkdir -p "$DEST"
cp "$TMP/package/dist/uPlot.iife.min.js" "$TMP/package/dist/uPlot.min.css" "$DEST/"
cp "$TMP/package/LICENSE" "$DEST/uPlot.LICENSE"
echo "$VERSION" > "$DEST/uPlot.VERSION"
echo "uPlot $VERSION -> $DEST"
