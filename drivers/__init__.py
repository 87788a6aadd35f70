"""Device drivers: each publishes its device's data as LSL streams from its own process."""
