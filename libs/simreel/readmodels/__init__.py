"""Read models folded from the event log: a run's state and figures (projections), the index of stored
artifacts that retention decides on (artifact_index)."""
