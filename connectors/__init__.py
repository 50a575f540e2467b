"""Register connectors (one per proof type) and register simulators."""
