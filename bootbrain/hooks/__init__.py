"""Hooks the DHCP servers run. ``leasehook.py`` is executed as a file, one process per
lease event, so nothing here may import more than the standard library."""
