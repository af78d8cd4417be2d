"""The embedded demo of `tokenmill serve --local`: simulated hosts (real agents running the
simulated engine), synthetic client traffic, and the deterministic demo day for screenshots."""
