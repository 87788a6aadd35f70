"""The simulated subject's muscles: a deterministic sEMG signal (seeded noise shaped by the lift's
activation) and the trigger box's pulse as an input line sees it. Every value depends only on the
sample's true time and index, so a test can recompute what a device sent."""

from __future__ import annotations

import numpy as np

from drivers.sim.lab import SimLabSettings

NOISE_TABLE = 1 << 16


class EmgSignal:
    def __init__(self, n_channels: int, sim: SimLabSettings, device_seed: int) -> None:
        self.n_channels = n_channels
        self.sim = sim
        rng = np.random.default_rng([sim.seed, device_seed])
        self.noise = rng.standard_normal((NOISE_TABLE, n_channels))
        self.gain = rng.uniform(0.5, 1.5, n_channels)

    def microvolts(self, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, channels) sEMG in microvolts for samples k taken at true times t."""
        activation = self.sim.muscle_activation(t)
        amplitude = 5.0 + 150.0 * activation[:, None] * self.gain[None, :]
        return self.noise[np.asarray(k) % NOISE_TABLE] * amplitude

    def trigger_level(self, t: np.ndarray, period: float) -> np.ndarray:
        """0..1: the part of the sample interval (t - period, t] during which the trigger line was
        high, as an anti-aliased analogue input sees a pulse (edges can be placed between samples)."""
        t = np.asarray(t, dtype=np.float64)
        return self.sim.pulse_overlap_many(t - period, t) / period

    def trigger_state(self, t: np.ndarray) -> np.ndarray:
        """0 or 1: a digital input sampled at t."""
        return self.sim.pulse_active(t).astype(np.uint8)


def device_seed(device_id: str) -> int:
    return sum(device_id.encode()) * 7919
