"""``python -m streams.cli``: the ``dnsguard`` command."""

from streams.cli import main

raise SystemExit(main())
