"""Stage deploy: serve the registered version; probe the endpoint; champion/challenger rollout."""
