"""Register simulators: synthetic, deterministic registers over real HTTP, with fault knobs."""
