"""``python -m cli`` (and ``torchrun ... -m cli``) runs the ``cafe`` command."""

from .main import main

main()
