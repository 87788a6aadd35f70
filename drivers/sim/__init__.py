"""The simulated lab: device emulators with known ground truth (clock offset, drift, latency, jitter)."""
