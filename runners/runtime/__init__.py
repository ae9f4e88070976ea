"""Running containers on this host: layers, root filesystems, runtime specs, the OCI runtime.

- :mod:`~runners.runtime.unpack` — safe, streaming, atomic unpacking of layer tars.
- :mod:`~runners.runtime.layers` — the content-addressed store of unpacked layers.
- :mod:`~runners.runtime.rootfs` — overlay root filesystems over shared layer dirs.
- :mod:`~runners.runtime.spec` — the OCI runtime spec (``config.json``), pure.
- :mod:`~runners.runtime.bundle` — a container's directory on the host.
- :mod:`~runners.runtime.oci_runtime` — ``runc``/``crun`` invocation under a supervisor
  (:mod:`~runners.runtime.shim`) that outlives the agent.
"""
