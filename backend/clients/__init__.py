"""Clients and their API keys: who may spend which prepaid balance."""
