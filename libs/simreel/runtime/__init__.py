"""What every process needs first: settings (every SIMREEL_* variable), logging, lean imports, small
asyncio and memory helpers."""
