"""The ``xlm`` command line. One module per command group; none imports torch at module level."""
