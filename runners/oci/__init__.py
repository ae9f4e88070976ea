"""OCI image format and distribution: digests, references, manifests, layouts, the registry client."""
