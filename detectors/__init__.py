"""dnsguard's detection logic: pure functions and small state objects.

Nothing in this package performs network or process I/O or imports an I/O
framework (enforced by import-linter). The same code runs in the Faust
workers, the embedded replay mode and the benchmarks.
"""
