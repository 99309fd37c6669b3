"""nextbest package."""
