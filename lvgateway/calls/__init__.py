"""Calls: the durable call store, dispositions, and the wrap-up pipeline."""
