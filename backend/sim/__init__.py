"""Simulation: the embedded local fleet, synthetic client traffic, demand and profit models."""
