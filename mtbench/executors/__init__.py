"""Executors: where cells run. ``local`` runs them in-process, one after another."""
