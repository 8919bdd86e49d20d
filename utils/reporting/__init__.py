"""Reporting: figures, text and markdown tables."""
