"""The code location's definitions, one folder per area (export, requests, deadlines)."""
