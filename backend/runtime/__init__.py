"""What every long-running service stands on: the clock, the event log and bus, the loop
supervisor, process tuning."""
