"""Simulations with a known truth behind every interval, test and verdict of the report."""
