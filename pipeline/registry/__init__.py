"""The embedded OCI distribution registry: the server side of ``/v2/``.

The map, pure core first::

    names.py       repository names, tags, request paths      (pure)
    manifests.py   manifest validation and references           (pure)
    ranges.py      Range / Content-Range                       (pure)
    paging.py      n/last pagination and Link headers          (pure)
    access.py      access requests (scopes) and the ACL        (pure, + YAML loading)
    gc.py          garbage-collection planning (pure) and its application
    errors.py      the spec's error codes (DistributionError)
    storage.py     the RegistryStorage protocol and its records
    fs/            FilesystemRegistryStorage: blobs, uploads, manifests, pins on disk
    htpasswd.py    users and bcrypt hashes
    tokens.py      bearer tokens (HS256 JWTs)
    auth.py        NoAuth, BasicAuth, TokenAuth and the TokenService
    api/           the Starlette application (RegistryAPI, registry_routes, create_registry_app)
    server.py      building a standalone registry from ``berth registry serve`` options

``berth serve`` includes :func:`pipeline.registry.api.registry_routes`; ``berth registry
serve`` runs :func:`pipeline.registry.server.build_registry` on its own.
"""
