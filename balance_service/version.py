"""The package version, in a module of its own: setup.cfg and the OpenAPI document read it without importing the app."""

__version__ = "1.0.0"
