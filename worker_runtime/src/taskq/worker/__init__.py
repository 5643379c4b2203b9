"""The worker runtime: handlers registered by name, and the loop that runs them."""
