"""PostgreSQL as source and target (psycopg 3)."""
