"""Prices: what a model costs a client right now."""
