"""Druid knowledge, pure: node types, ports, runtime properties, TLS material locations, restart order."""
