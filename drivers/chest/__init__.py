"""Chest straps over Bluetooth LE (bleak): the standard Heart Rate Service and Polar's measurement
(PMD) service for ECG and acceleration, with a breathing-rate estimate."""
