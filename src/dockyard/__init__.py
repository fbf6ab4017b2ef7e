"""dockyard: a private OCI / Docker registry in one pip install."""

__version__ = "0.1.0"
