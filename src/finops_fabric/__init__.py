"""FinOps Fabric: compile a compliance team's policy ontology O into a signed enforcer A."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
