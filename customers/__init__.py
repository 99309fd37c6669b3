"""customers package."""
