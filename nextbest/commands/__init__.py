"""The commands of the ``nextbest`` CLI, one module per command group.

``nextbest/cli.py`` assembles them into the app; ``common`` holds what they share.
"""
