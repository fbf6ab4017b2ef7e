"""Domain rules of the registry: uploads, blobs, manifests, tags and referrers. No HTTP here."""
