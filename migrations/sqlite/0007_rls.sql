-- Row-level security is PostgreSQL's (see migrations/postgres/0007_rls.sql): SQLite has no roles
-- or policies, and one process owns the file. This migration keeps the numbering of both
-- folders in step and changes nothing.
SELECT 1;
