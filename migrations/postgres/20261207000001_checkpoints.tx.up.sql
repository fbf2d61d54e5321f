-- Checkpoints: the encoded state right after event seq, made by the Apply
-- version apply_version. A cache of the log, never a replacement for it:
-- events are never deleted. Several instances may write the same checkpoint
-- (same seq, same version, same content); the first insert wins.
CREATE TABLE IF NOT EXISTS checkpoints (
	seq           bigint      NOT NULL,
	apply_version text        NOT NULL,
	state_hash    text        NOT NULL,
	data          bytea       NOT NULL,
	created_at    timestamptz NOT NULL,
	PRIMARY KEY (seq, apply_version)
);

--bun:split

-- data is compressed by the gateway; PostgreSQL compressing it again would
-- only cost time on every read.
ALTER TABLE checkpoints ALTER COLUMN data SET STORAGE EXTERNAL;
