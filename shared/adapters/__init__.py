"""Adapters: the nouns that talk to the hub's peers, one module per system."""
