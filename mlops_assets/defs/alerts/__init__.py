"""Alert delivery and asset-check alerts: sensors only (the alert rows are written elsewhere)."""
