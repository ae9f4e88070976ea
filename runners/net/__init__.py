"""Host networking, split by noun; :mod:`runners.network` is the public face."""
