"""The dnsguard exception tree.

Third-party errors are translated into these at the boundary where they
happen (``raise ... from exc``), so callers handle one family of errors::

    DnsguardError
    ├── ConfigError          settings or a config file are invalid
    ├── StackError           a local-stack service failed to install, start or stop
    │   └── ServiceNotReady  a service started but did not become ready in time
    └── StoreUnavailable     Redis, the verdict store, is away or failing
                             (``streams.policy.store``, the one Redis edge)
"""

from __future__ import annotations


class DnsguardError(Exception):
    """Base class of every error dnsguard raises on purpose."""


class ConfigError(DnsguardError):
    """A setting or configuration file is invalid; the message says which and why."""


class StackError(DnsguardError):
    """A service of the local stack could not be installed, started or stopped."""


class ServiceNotReady(StackError):
    """A service process is up but did not answer its readiness check in time."""

    def __init__(self, service: str, detail: str, log_tail: str) -> None:
        super().__init__(
            f"{service} is not ready: {detail}\n--- last lines of its log ---\n{log_tail}"
        )
        self.service = service
        self.detail = detail
        self.log_tail = log_tail
