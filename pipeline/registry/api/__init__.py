"""The OCI distribution API over Starlette: ``/v2/...`` and the token endpoint."""

from __future__ import annotations

from pipeline.registry.api.app import RegistryAPI, create_registry_app, registry_routes

__all__ = ["RegistryAPI", "create_registry_app", "registry_routes"]
