"""The pure boot core: what iPXE sent → the decision → the script, and the booted
OS's documents. No Flask, no SQLAlchemy, no I/O: the inventory hands in the frozen
views of :mod:`~bootbrain.boot.types`, and the machine routes send back what comes out.

In the order a boot passes through them:

* :mod:`~bootbrain.boot.facts` — parse and canonicalise the ``/ipxe`` query;
* :mod:`~bootbrain.boot.decide` — the decision (action, assigned, rule, default), with why;
* :mod:`~bootbrain.boot.variables` — the template variables and ``IPXE_BOOT_*`` values;
* :mod:`~bootbrain.boot.render` — the bootstrap, decision and error scripts, built on
  :mod:`~bootbrain.boot.sandbox` (the safe template engine and its structure checks)
  and :mod:`~bootbrain.boot.script` (iPXE's own tokenizing rules);
* :mod:`~bootbrain.boot.documents` — meta-data, user-data, network-config, metadata.json;
* :mod:`~bootbrain.boot.validate` — the same checks, run when an operator saves a value.
"""
