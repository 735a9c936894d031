"""Development tools of a source checkout (not part of the library): the fault-injection
and load harness (``tools/reliability``)."""
