"""Pages that belong to no single feature: the dashboard, language choice, health."""
