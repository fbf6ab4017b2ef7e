"""Who may do what: accounts, permissions and the Docker token service."""
