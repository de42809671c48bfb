"""Fan-out: channels (rooms) whose publishes reach subscribers in every worker and host."""
