"""The queue store: every statement taskq sends to PostgreSQL, by name, from the .sql files."""
