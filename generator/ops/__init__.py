"""Day-2 operations of a deployed environment: logs, health, rollback, and (offline) diagram and cost."""
