"""What booting machines talk to, and what answers them.

The boot flow (:mod:`~bootbrain.machine.flow`: identity → decision → script), the
booted OS's documents (:mod:`~bootbrain.machine.documents`) and the event writer that
records boots off the hot path (:mod:`~bootbrain.machine.events`) are services, used
by the API's previews and the CLI too; :mod:`~bootbrain.machine.routes` is their HTTP
transport and :mod:`~bootbrain.machine.errors` the one place a failure becomes what a
machine reads (always a valid iPXE script).
"""
