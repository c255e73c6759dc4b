"""Flows: spec, expressions, the durable engine and its step kinds, SQL steps, the run store and queue."""
