-- The event log. seq is assigned by the store inside a BEGIN IMMEDIATE
-- transaction (SQLite's single writer), so it is global, gap-free and in commit
-- order. occurred_at is RFC 3339 text in UTC with microseconds; data is JSON text.
CREATE TABLE IF NOT EXISTS events (
	seq               INTEGER NOT NULL PRIMARY KEY,
	id                TEXT    NOT NULL,
	type              TEXT    NOT NULL,
	aggregate_type    TEXT    NOT NULL,
	aggregate_id      TEXT    NOT NULL,
	aggregate_version INTEGER NOT NULL,
	tenant_id         TEXT    NOT NULL DEFAULT '',
	actor             TEXT    NOT NULL DEFAULT '',
	occurred_at       TEXT    NOT NULL,
	data              TEXT    NOT NULL,
	CONSTRAINT events_id_key UNIQUE (id),
	-- Optimistic concurrency: a second writer of the same version fails here.
	CONSTRAINT events_aggregate_version_key UNIQUE (aggregate_id, aggregate_version)
);

--bun:split

CREATE INDEX IF NOT EXISTS events_aggregate_seq_idx ON events (aggregate_id, seq);

--bun:split

CREATE INDEX IF NOT EXISTS events_tenant_seq_idx ON events (tenant_id, seq);
