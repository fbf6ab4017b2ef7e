"""One module per area of the UI; each exposes ``ROUTES`` as (method, path, handler)."""
