"""Analyses of trained models: representation similarity (001 appendix C.7)."""
