"""The training planner: what should I do tomorrow? Reads an athlete's log and the weather,
computes training load as coaches do, and recommends the next session."""
