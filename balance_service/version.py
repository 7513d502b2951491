"""The release number, defined here only: the package, setup.cfg and /openapi.json all read it."""

__version__ = "1.0.0"
