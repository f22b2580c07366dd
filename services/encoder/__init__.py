"""encoder: FrameBatch stream → MP4 / GIF / PNG files (PyAV) → VideoAvailable."""
