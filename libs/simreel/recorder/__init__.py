"""Record frames that something else produces (a Gymnasium env, a game, a camera) as a simreel run.

Downstream nothing changes: the encoder claims the SimStarted and encodes while frames arrive, the
uploader stores videos, telemetry and the report. The publishing itself is the simulator's own
(simreel.transport.run_publisher); this package adds the two ways a producer drives it:

- `RunRecorder` (run.py): for asyncio code, one run at a time.
- `RecorderThread` (thread.py): for code that is not asyncio (an env's `step()`): a background
  thread owns the loop and the connection, fed through a byte-bounded hand-off; each run's outcome
  is a `RecordedRun` (results.py). `recorder_for_folder` (folder.py) builds the one a drop-in
  recorder uses: the configured bus, else the embedded stack under its video folder.

Usage (inside a running event loop; one recorder per run)::

    rec = RunRecorder(bus, run_id="cam-1", width=640, height=480, fps=30)
    await rec.start()
    for pixels in frames:                      # HxWx3 uint8 arrays or rgb24 bytes
        await rec.add_frame(pixels, {"reward": 0.0})
    await rec.end_episode(seed=0, steps=n)
    await rec.complete()                       # → SimCompleted; ArtifactStored events follow
"""
from simreel.recorder.results import RecordedRun
from simreel.recorder.run import ATTEMPT, DEFAULT_INFLIGHT_BYTES, RecorderError, RunRecorder
from simreel.recorder.thread import DEFAULT_QUEUE_BYTES, RecorderThread, embedded_services
from simreel.recorder.folder import EMBEDDED_DIR, recorder_for_folder

__all__ = ["ATTEMPT", "DEFAULT_INFLIGHT_BYTES", "DEFAULT_QUEUE_BYTES", "EMBEDDED_DIR", "RecordedRun", "RecorderError",
           "RecorderThread", "RunRecorder", "embedded_services", "recorder_for_folder"]
