"""The Faust stream engine: events in, alerts and verdicts out.

Split like Faust's own examples: ``app`` builds the application, ``topics``
declares the topics, ``tables`` the changelog-backed tables, ``agents`` the
stream processors; ``outputs`` turns findings and verdicts into OCSF alerts and
Redis/Kafka writes. Agents only decode, call :mod:`detectors`, and produce.
"""
