-- The named admin key that made a change ('' for the root key and the
-- command line): the actor's name alone can be reused after a revoke.
ALTER TABLE events ADD COLUMN actor_key_id text NOT NULL DEFAULT '';
