"""retention: keeps each session within its policy (latest N, max age, max bytes); state = the event log."""
