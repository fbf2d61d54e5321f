-- Checkpoints: the encoded state right after event seq, made by the Apply
-- version apply_version. A cache of the log, never a replacement for it:
-- events are never deleted. Several instances may write the same checkpoint
-- (same seq, same version, same content); the first insert wins.
CREATE TABLE IF NOT EXISTS checkpoints (
	seq           INTEGER NOT NULL,
	apply_version TEXT    NOT NULL,
	state_hash    TEXT    NOT NULL,
	data          BLOB    NOT NULL,
	created_at    TEXT    NOT NULL,
	PRIMARY KEY (seq, apply_version)
);
