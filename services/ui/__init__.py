"""ui: a web app over the event log — runs live, each episode's video with its telemetry on one time axis.

It reads state only by replaying and following EVENTS (simreel.readmodels.projections), reads artifacts through the
configured store, and writes only by publishing events (SimRequested, DeleteRequested,
CaptureControlRequested). It imports no other service.
"""
