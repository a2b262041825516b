"""Postgres persistence: the schema, the transactional bitmap, allocations and the event log.

Repositories here never commit: the service layer's unit of work owns the transaction.
"""
