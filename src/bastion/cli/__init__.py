"""The ``bastion`` command line: a thin typer layer over :mod:`bastion.client`."""
