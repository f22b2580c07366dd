"""The ui's pages and scripts, served as files (no build step), with uPlot vendored from npm
(uPlot.LICENSE, uPlot.VERSION; ../refresh_vendor.sh refreshes it)."""
