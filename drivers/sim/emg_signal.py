"""The simulated subject's muscles: a deterministic sEMG signal (seeded noise shaped by the lift's
activation, plus the heart's electrical artifact on trunk electrodes) and the trigger box's pulse as
an input line sees it. Every value depends only on the sample's true time and index (and the pulses
the box fired), so a test can recompute what a device sent."""

from __future__ import annotations

import numpy as np

from drivers.sim.lab import SimLabSettings, heart_artifact
from drivers.sim.triggerline import FreeRunningPulses, PulseLine

NOISE_TABLE = 1 << 16


class EmgSignal:
    def __init__(self, n_channels: int, sim: SimLabSettings, device_seed: int, line: PulseLine | None = None,
                 heart_uv: list[float] | None = None) -> None:
        self.n_channels = n_channels
        self.sim = sim
        self.line = line or FreeRunningPulses(sim)
        heart = list(heart_uv or [])
        if len(heart) > n_channels:
            raise ValueError(f"heart_artifact_uv has {len(heart)} values for {n_channels} channels")
        self.heart_uv = np.array(heart + [0.0] * (n_channels - len(heart)))
        rng = np.random.default_rng([sim.seed, device_seed])
        self.noise = rng.standard_normal((NOISE_TABLE, n_channels))
        self.gain = rng.uniform(0.5, 1.5, n_channels)

    def microvolts(self, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, channels) sEMG in microvolts for samples k taken at true times t."""
        activation = self.sim.muscle_activation(t)
        amplitude = 5.0 + 150.0 * activation[:, None] * self.gain[None, :]
        out = self.noise[np.asarray(k) % NOISE_TABLE] * amplitude
        if self.heart_uv.any():
            out = out + heart_artifact(self.sim, t)[:, None] * self.heart_uv[None, :]
        return out

    def trigger_level(self, t: np.ndarray, period: float) -> np.ndarray:
        """0..1: the part of the sample interval (t - period, t] during which the trigger line was
        high, as an anti-aliased analogue input sees a pulse (edges can be placed between samples)."""
        t = np.asarray(t, dtype=np.float64)
        return self.line.overlap_many(t - period, t) / period

    def trigger_state(self, t: np.ndarray) -> np.ndarray:
        """0 or 1: a digital input sampled at t."""
        return self.line.active(t).astype(np.uint8)


def device_seed(device_id: str) -> int:
    return sum(device_id.encode()) * 7919
