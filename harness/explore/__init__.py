"""Explore a service's SQL from the outside: a PostgreSQL wire-protocol proxy (proxy.py) that
records every statement and lets a scheduler hold any of them, on hand-written framing
(wire.py)."""
