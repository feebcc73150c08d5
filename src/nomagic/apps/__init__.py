"""Applications built on nomagic's public API only: the planner, the tour, the playground."""
