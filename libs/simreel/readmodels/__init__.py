"""Read models folded from the event log: a run's state and figures (projections), the retention
index of stored artifacts."""
