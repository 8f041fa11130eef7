"""The ``facebench`` command line (click + rich)."""
