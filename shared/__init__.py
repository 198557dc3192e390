"""Contoso Data Hub core: typed models, settings, services (verbs) and adapters (nouns)."""
