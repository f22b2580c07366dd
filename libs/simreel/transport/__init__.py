"""NATS and what travels over it: the bus, frame packing and compression, staging of encoded files,
scene files in the object store, the thread-to-loop hand-off, a run's publisher."""
