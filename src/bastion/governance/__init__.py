"""Governance: securables, privileges, grants, authorization and audit."""
