"""Registry metadata: SQLAlchemy Core tables, queries and Alembic migrations.

One schema serves SQLite (the embedded default) and PostgreSQL.
"""
