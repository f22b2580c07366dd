"""The wire contract: events, subjects, output naming, frame planes, digests, keep rules.

Everything here is data and pure functions that every producer and consumer agrees on; it imports
nothing of simreel above it (an import-linter contract in pyproject.toml)."""
