-- Listing checkpoints (start-up, every history query) reads their seq,
-- version, hash and time. In the table those are split by the data blob:
-- created_at comes after it, so each listed row read the blob's whole
-- overflow chain, megabytes a row. This index holds every listed column,
-- so a list never touches the table. (PostgreSQL keeps data out of line.)
CREATE INDEX IF NOT EXISTS checkpoints_list ON checkpoints (seq, apply_version, state_hash, created_at);
