"""dnsguard's I/O edge: collector, stream workers, feed server, local stack, CLI.

Everything that talks to a network, a process or a file lives here; the
detection logic it calls lives in :mod:`detectors` and never does I/O.
"""
