"""Shared driver runtime: stream declarations, clock fitting, health reporting, process control."""
