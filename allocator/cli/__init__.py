"""The ``allocator`` command: the server, database administration and the admin CLI."""
