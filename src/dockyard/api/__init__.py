"""HTTP only: parse the request, call the registry, render the response or the OCI error."""
