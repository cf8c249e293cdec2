"""Vendored upstream test suites are run by their own scripts (scripts/client-e2e.py), never collected by pytest here."""

collect_ignore_glob = ["*"]
