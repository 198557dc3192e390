"""Thin trigger adapters: one module per flow of the reference architecture."""
