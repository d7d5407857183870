"""Guardrails in the data path: classification, policy and row estimates per statement."""
