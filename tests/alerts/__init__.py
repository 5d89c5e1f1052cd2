"""Alert automations against a real Prefect server (its trigger and action services running)."""
