"""Starting and running things: a service's lifecycle, the embedded stack (nats-server and the
services as processes), the one stack of a process, the binaries it runs, checks at start."""
