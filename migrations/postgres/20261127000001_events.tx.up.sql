-- The event log. seq is assigned by the store under a transaction-scoped
-- advisory lock, so it is global, gap-free and in commit order.
CREATE TABLE IF NOT EXISTS events (
	seq               bigint      PRIMARY KEY,
	id                text        NOT NULL,
	type              text        NOT NULL,
	aggregate_type    text        NOT NULL,
	aggregate_id      text        NOT NULL,
	aggregate_version bigint      NOT NULL,
	tenant_id         text        NOT NULL DEFAULT '',
	actor             text        NOT NULL DEFAULT '',
	occurred_at       timestamptz NOT NULL,
	data              jsonb       NOT NULL,
	CONSTRAINT events_id_key UNIQUE (id),
	-- Optimistic concurrency: a second writer of the same version fails here.
	CONSTRAINT events_aggregate_version_key UNIQUE (aggregate_id, aggregate_version)
);

--bun:split

CREATE INDEX IF NOT EXISTS events_aggregate_seq_idx ON events (aggregate_id, seq);

--bun:split

CREATE INDEX IF NOT EXISTS events_tenant_seq_idx ON events (tenant_id, seq);
