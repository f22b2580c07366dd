"""simulator: SimRequested → MuJoCo physics + headless rendering → FrameBatch stream and run events."""
