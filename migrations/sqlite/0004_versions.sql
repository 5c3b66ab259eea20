-- Optimistic concurrency for the admin API: every write of an agent or partner row compares the
-- version it read and increments it (a concurrent change makes the write fail and be redone on the
-- fresh row, so no update is lost); the version is the row's ETag (RFC 9110 §8.8.3).
ALTER TABLE agents ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE partners ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
